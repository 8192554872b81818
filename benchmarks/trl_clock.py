"""The callback the TRL side of every benchmark times its steps with (transformers imported only when used)."""

from __future__ import annotations

import time
from typing import Any


def step_clock() -> Any:
    """A ``TrainerCallback`` recording each optimizer step's wall time (``times``) and each logged loss
    (``losses``), so TRL's steps are timed as duelist's are: from step begin to step end, logging excluded."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.losses: list[float] = []

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.times.append(time.perf_counter() - self.t0)

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict | None = None, **k: Any) -> None:
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return Clock()
