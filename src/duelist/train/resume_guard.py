"""Resume safety: a resumed run must be the same experiment as its first half.

The run folder keeps the config the run follows (``config.yaml``). ``--resume`` compares the new config
with it; every difference outside ``SAFE_ON_RESUME`` changes what is computed (the loss, the data or its
order, the optimizer, the schedule, the model or its precision), so the resume is refused with the list.
An explicit flag (``ALLOW_FLAG``) accepts the change, and ``record_changes`` writes it into the run folder
(``config_changes.jsonl``) so that the run says it is two experiments.

A field this module does not know (a new config section, say) counts as math-changing until it is added
to ``SAFE_ON_RESUME``: refusing by mistake costs a flag, continuing by mistake costs an experiment.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from duelist.config import Config, dump_config

ALLOW_FLAG = "--allow-config-change"
CONFIG_FILE = "config.yaml"
CHANGES_FILE = "config_changes.jsonl"

SAFE_ON_RESUME: dict[str, str] = {
    # where and how the run reports and saves: no effect on any update
    "train.output_dir": "where the run lives (a run folder may be moved or renamed)",
    "train.log_every": "how often metrics are written",
    "train.progress": "the terminal progress bar",
    "train.tensorboard": "TensorBoard event files",
    "train.save_every": "when checkpoints are taken (a resume from any of them is exact)",
    "train.keep_checkpoints": "how many checkpoints are kept",
    "train.save_final": "whether final/ is written",
    "train.on_nonfinite": "what a step with a NaN/inf does (stop or skip); every finite step is computed the "
    "same, and a skipped one is counted in the logs (the remedy after a run stopped on one)",
    "eval": "evaluation settings, read after training and never by it",
    # the same arithmetic on other resources: results agree to rounding (the tests named pin it)
    "train.threads": "CPU threads: the same operations spread over more or fewer cores",
    "train.keep_freed_memory": "the memory allocator's behaviour",
    "train.grad_accum": "the same global batch cut into more or fewer equal micro-batches, so the same mean "
    "gradient (BatchPlan; tests/test_trainer.py::test_grad_accumulation_equals_big_batch)",
    "train.layout": "how a micro-batch is laid out; every layout gives the same log-probs and gradients "
    "(tests/test_logprobs.py)",
    "train.logprob_chunk": "log-probs computed in larger or smaller chunks of tokens, same values "
    "(tests/test_logprobs.py)",
    "train.logprob_recompute": "head activations kept or recomputed in the backward pass, same values",
    "train.reference": "reference log-probs cached or recomputed: the same frozen model scores the same pairs",
    "train.compile": "torch.compile fuses the same operations into fewer kernels",
    "model.gradient_checkpointing": "activations recomputed instead of kept, same gradients "
    "(tests/test_checkpointing.py)",
    "model.attn_implementation": "the same attention computed by another kernel",
    "model.onednn_linear": "the same matmuls computed by another library (tests/test_onednn.py)",
    "model.trust_remote_code": "permission to run a model's own code, needed identically by both halves",
    "optim.fused": "the same AdamW update in one fused kernel",
}
"""Config fields (dotted; a section name covers the whole section) that may differ on ``--resume``,
each with why it does not change the experiment. Everything else does: ``loss.*``, ``data.*``, ``optim.*``
but ``fused``, ``model.name/gguf_file/dtype/lora``, ``train.seed/steps/epochs/batch_size/mixed_precision``."""

_ABSENT = "(absent)"


class ResumeConfigError(ValueError):
    """``--resume`` with a config whose math-changing fields differ from the run's."""


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key} {_show(self.old)} → {_show(self.new)}"

    @property
    def safe(self) -> bool:
        parts = self.key.split(".")
        return any(".".join(parts[:i]) in SAFE_ON_RESUME for i in range(1, len(parts) + 1))


def _show(v: Any) -> str:
    return v if v == _ABSENT else json.dumps(v)


def _diff(old: Any, new: Any, key: str, out: list[Change]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in [*old, *(k for k in new if k not in old)]:
            _diff(old.get(k, _ABSENT), new.get(k, _ABSENT), f"{key}.{k}" if key else str(k), out)
    elif old != new:
        out.append(Change(key, old, new))


def _normalized(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config with today's defaults filled in, so that a field added since it was written
    compares equal to its default. Fields since removed stay in (they differ from the new config's
    absence); a tree that does not validate otherwise is compared as written."""
    removed: list[tuple[Any, ...]] = []
    try:
        Config.model_validate(dict(tree))
    except ValidationError as e:
        removed = [err["loc"] for err in e.errors() if err["type"] == "extra_forbidden"]
    known = copy.deepcopy(dict(tree))
    for loc in removed:
        node = known
        for part in loc[:-1]:
            node = node[part]
        del node[loc[-1]]
    try:
        out = Config.model_validate(known).model_dump(mode="json")
    except ValidationError:
        return dict(tree)
    for loc in removed:
        node = out
        for part in loc[:-1]:
            node = node.setdefault(part, {})
        value = tree
        for part in loc:
            value = value[part]
        node[loc[-1]] = value
    return out


def config_changes(saved: Mapping[str, Any], new: Config) -> list[Change]:
    """Every field that differs between a saved config (the YAML tree of a run's ``config.yaml``) and
    ``new``, in the order of the config's sections."""
    out: list[Change] = []
    _diff(_normalized(saved), new.model_dump(mode="json"), "", out)
    return out


def math_changes(run_dir: str | Path, new: Config) -> list[Change]:
    """The differences between ``run_dir/config.yaml`` and ``new`` outside ``SAFE_ON_RESUME`` (none if
    the run has no saved config yet: nothing was trained)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return []
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ResumeConfigError(f"{path}: the run's saved config cannot be read ({e.__class__.__name__})") from None
    if not isinstance(saved, dict):
        raise ResumeConfigError(f"{path}: the run's saved config is not a mapping of sections")
    return [c for c in config_changes(saved, new) if not c.safe]


def save_config(run_dir: str | Path, cfg: Config) -> None:
    """Write ``run_dir/config.yaml`` atomically (a temporary file renamed over it): a run killed while
    writing it leaves the previous config, never half of one."""
    path = Path(run_dir) / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(dump_config(cfg))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def refusal(run_dir: str | Path, changes: list[Change]) -> str:
    """The one-line error for a refused resume."""
    listed = "; ".join(str(c) for c in changes)
    return (
        f"--resume: {run_dir} was trained with other settings that change the training math: {listed}. "
        f"Resume with the run's values (its config.yaml), start a new run in another train.output_dir, "
        f"or pass {ALLOW_FLAG} to continue with the new values (recorded in {CHANGES_FILE})"
    )


def check_resume(run_dir: str | Path, new: Config, allow: bool = False) -> list[Change]:
    """The math-changing differences of a resume (empty: resume freely). Raises ``ResumeConfigError``
    listing them unless ``allow``; with ``allow`` the caller records them (``record_changes``)."""
    changes = math_changes(run_dir, new)
    if changes and not allow:
        raise ResumeConfigError(refusal(run_dir, changes))
    return changes


def record_changes(run_dir: str | Path, changes: list[Change], step: int) -> str:
    """Append an accepted change to ``run_dir/config_changes.jsonl`` (time, step, old → new of every
    field) and return the line for the run's log."""
    entry = {
        "time": time.time(),
        "step": step,
        "changes": [{"key": c.key, "old": c.old, "new": c.new} for c in changes],
    }
    with (Path(run_dir) / CHANGES_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    return f"resumed at step {step} with changed settings ({ALLOW_FLAG}): " + "; ".join(str(c) for c in changes)
