"""The tournament's configuration: a YAML file with a ``tournament:`` section.

```yaml
tournament:
  policies: {dpo: runs/dpo, nash_md: runs/nash-md/final, base: reference}
  judge: intransitive          # default: the prompts' task oracle
  prompts: intransitive-review:test
  num_prompts: 64
  samples_per_prompt: 2
```

A policy is a run folder (its ``final/`` is used), a model directory, ``reference`` (the ``reference``
model, ``default`` unless set) or ``default`` (the embedded base model). Unknown keys are errors that list the
valid ones; every policy is checked before anything is sampled.

A file may also train its entrants first (``duelist.eval.tournament.entrants``):

```yaml
common: {model: {name: default}, train: {steps: 20, batch_size: 8}}   # merged under every entrant
entrants:
  dpo: {data: {train: intransitive-review}, loss: {name: dpo}}
  sppo: {online: {method: {name: sppo}, prompts: intransitive-review:prompts, judge: intransitive}}
quick: {train.steps: 2, tournament.num_prompts: 8}   # overrides that --quick applies
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from duelist.config import ConfigError, Section, _merge, parse_overrides

REFERENCE = "reference"
DEFAULT = "default"


class TournamentConfig(Section):
    policies: dict[str, str] = Field(default_factory=dict)
    """name → run folder, model directory, ``reference`` or ``default``; in this order in the outputs."""
    reference: str = DEFAULT
    """The model an entry ``reference`` stands for: ``default`` or a model directory / run folder."""
    judge: str | None = None
    """A judge name (``duelist judges``); default: the oracle of the task the prompts come from."""
    judge_params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the judge, e.g. ``{base: lexicon, epsilon: 0.1}`` for ``noisy``."""
    prompts: str
    """Held-out prompts: ``<task>:<split>`` or a file of records with a ``prompt`` field."""
    num_prompts: int = Field(64, gt=0)
    samples_per_prompt: int = Field(2, gt=0)
    max_new_tokens: int = Field(32, gt=0)
    temperature: float = Field(1.0, gt=0)
    batch_size: int = Field(32, gt=0)
    seed: int = 0
    """Sampling seed, the same for every policy (common random numbers)."""
    output_dir: str = "runs/tournament"


class TournamentFile(Section):
    tournament: TournamentConfig
    common: dict[str, Any] = Field(default_factory=dict)
    """A training config tree merged under every entrant's."""
    entrants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """name → training config tree; each is trained into ``<tournament.output_dir>/<name>`` and joins the
    policies, before those ``tournament.policies`` names."""
    quick: dict[str, Any] = Field(default_factory=dict)
    """``key: value`` overrides that ``--quick`` applies: ``tournament.*`` keys to the tournament, all others to
    every entrant (e.g. ``train.steps: 2``)."""


def load_tournament_config(path: str | Path, overrides: list[str] | None = None) -> TournamentConfig:
    """Read ``path``'s ``tournament:`` section, apply ``tournament.key=value`` overrides, validate."""
    return load_tournament_file(path, overrides).tournament


def load_tournament_file(path: str | Path, overrides: list[str] | None = None, quick: bool = False) -> TournamentFile:
    """The whole file: overrides (``tournament.key=value``, ``entrants.<name>.key=value``, ``common.key=value``)
    and, with ``quick``, the file's ``quick`` overrides of the tournament (after the others, so they win),
    validated. The entrants' ``quick`` overrides are applied by ``entrant_configs``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    tree = yaml.safe_load(p.read_text()) or {}
    if not isinstance(tree, dict) or "tournament" not in tree:
        raise ConfigError(f"{p}: needs a top-level 'tournament:' section")
    tree = _merge(tree, parse_overrides(overrides or []))
    if quick:
        tree = _merge(tree, parse_overrides([f"{k}={v}" for k, v in (tree.get("quick") or {}).items()
                                             if k.startswith("tournament.")]))
    try:
        return TournamentFile.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(f"{p}: invalid tournament configuration:\n  " + "\n  ".join(_messages(e))) from None


def _messages(e: ValidationError) -> list[str]:
    out = []
    for err in e.errors():
        key = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            model = TournamentConfig if len(err["loc"]) > 1 else TournamentFile
            out.append(f"{key}: unknown key (valid keys here: {', '.join(model.model_fields)})")
        else:
            got = err.get("input")
            out.append(f"{key}: {err['msg']}" + (f" (got {got!r})" if not isinstance(got, dict) else ""))
    return out


def resolve_policy(name: str, value: str | Path, reference: str = DEFAULT) -> str:
    """The model to load for entry ``name``: ``default``, a run folder's ``final/``, or a model directory."""
    spec = reference if str(value) == REFERENCE else str(value)
    if spec == DEFAULT:
        return DEFAULT
    p = Path(spec).expanduser()
    if (p / "final" / "config.json").is_file():
        return str(p / "final")
    if (p / "config.json").is_file():
        return str(p)
    raise ConfigError(f"tournament.policies.{name}: {spec!r} is not a run folder (no final/config.json), a model "
                      f"directory (no config.json), {REFERENCE!r} or {DEFAULT!r}")


def resolve_policies(policies: dict[str, str | Path], reference: str = DEFAULT) -> dict[str, str]:
    if len(policies) < 2:
        raise ConfigError(f"tournament.policies: a tournament needs at least 2 policies (got {len(policies)})")
    return {name: resolve_policy(name, v, reference) for name, v in policies.items()}


def judge_name(tcfg: TournamentConfig) -> str:
    from duelist.data import tasks

    if tcfg.judge:
        return tcfg.judge
    if tasks.is_task(tcfg.prompts) and tasks.get(tcfg.prompts).judge:
        return tasks.get(tcfg.prompts).judge  # type: ignore[return-value]
    raise ConfigError("tournament.judge is required when the prompts do not come from a task with an oracle")
