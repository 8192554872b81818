"""Per-step metrics to the terminal (rich progress bar), a JSONL file and TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

SHOWN = ("loss", "rewards/accuracy", "rewards/margin", "tokens_per_s")


class RunLogger:
    """Writes ``metrics.jsonl`` (one object per logged step, full float precision) and ``tb/`` events.

    On resume the JSONL is cut back to the checkpoint's step, so the file of a resumed run reads exactly
    like an uninterrupted one.
    """

    def __init__(self, out: Path, total: int, start: int = 0, progress: bool = True, tensorboard: bool = True):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "metrics.jsonl"
        self._truncate(start)
        self.file = self.path.open("a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=start)
        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not progress,
        )
        self.task = self.bar.add_task("train", total=total, completed=start, info="")
        self.bar.start()

    def _truncate(self, start: int) -> None:
        if not self.path.exists():
            return
        keep = [l for l in self.path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= start]
        self.path.write_text("".join(l + "\n" for l in keep))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row: dict[str, Any] = {"step": step, **metrics}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, float | int) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
        info = "  ".join(f"{k.split('/')[-1]} {metrics[k]:.4g}" for k in SHOWN if k in metrics)
        self.bar.update(self.task, completed=step, info=info)

    def close(self) -> None:
        self.bar.stop()
        self.file.close()
        if self.tb is not None:
            self.tb.close()
