"""The registry of reward and preference model kinds: each kind is a class registered once, with its
parameters declared as keyword-only arguments of its ``__init__``.

A kind says everything a learner, a scorer and a judge need, so none of them looks at its name:

* ``make_head(hidden_size, num_users)``: the head module (``duelist.models.heads``) read at each sequence's
  last token; ``reads_prompt`` / ``reads_user`` / ``backbones`` say what else the head reads (the prompt's
  last hidden state, a per-pair user index, hidden states of M backbones stacked as [N, M, H]);
* ``data_fields()``: per-pair numbers every training record must carry (``margin``, ``user``), with bounds;
* ``loss(w, l, fields, progress)``: per-pair losses and metrics from the head outputs of the chosen (w) and
  rejected (l) responses of a batch of pairs, the per-pair fields as tensors, and the fraction of training
  done (``progress``, read by kinds with a schedule);
* ``logit(a, b)``: log-odds of P(a ≻ b | x) from head outputs of a and b (same prompt, row by row);
* ``reward(out)`` (kinds with ``has_reward``): one scalar per response from the head's standardised scores;
* ``refit(head, w, l, users)`` (kinds with ``refits``): the step a learner takes over every training pair before
  each epoch (MaxMin-RLHF's E-step).

The parameters' type hints (``Annotated[float, Field(ge=0)]``) and defaults are the single source for
validation, error messages, ``duelist reward-kinds`` and the table in ``docs/reward_models.md``.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from torch import Tensor, nn

from duelist.losses.registry import describe_param
from duelist.losses.stats import LossOutput
from duelist.models.heads import HeadOutput

Bounds = tuple[float | None, float | None]
USER_FIELD = "user"


def index_users(values: Sequence[float]) -> tuple[list[int], Tensor]:
    """Per-pair ``user`` values (validated numbers) → (the distinct user ids, sorted: the head's user rows and the
    card's ``users``; each pair's row index, [P])."""
    ints = [int(v) for v in values]
    if any(i != v for i, v in zip(ints, values, strict=True)):
        raise ValueError("user ids must be whole numbers")
    ids = sorted(set(ints))
    row = {u: i for i, u in enumerate(ids)}
    return ids, torch.tensor([row[u] for u in ints], dtype=torch.long)


class KindConfigError(ValueError):
    """A model kind name or parameter the registry cannot accept; the message lists what is valid."""


@dataclass(frozen=True)
class KindSpec:
    """What the registry knows about one kind."""

    name: str
    cls: type[Kind]
    params: type[BaseModel]
    paper: str
    formula: str
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def describe_params(self) -> list[str]:
        return [describe_param(self, name) for name in self.defaults]  # type: ignore[arg-type]


class Kind(ABC):
    """A registered model kind bound to validated parameters (``self.params``)."""

    spec: ClassVar[KindSpec]
    # what the head reads and gives (a kind may set these per instance, from its parameters)
    reads_prompt: bool = False
    reads_user: bool = False
    user_scores: bool = False  # scoring (not only training) needs a user: the preference is a user's
    backbones: int = 1
    has_reward: bool = True
    refits: bool = False  # ``refit`` runs over every training pair before each epoch
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def data_fields(self) -> dict[str, Bounds]:
        """Per-pair numbers the loss (or the head) reads, name → (low, high) bounds."""
        return {USER_FIELD: (0, None)} if self.reads_user else {}

    @abstractmethod
    def make_head(self, hidden_size: int, num_users: int = 0) -> nn.Module: ...

    @abstractmethod
    def logit(self, a: HeadOutput, b: HeadOutput) -> Tensor:
        """log-odds of P(a ≻ b | x), [N]."""

    @abstractmethod
    def loss(
        self, w: HeadOutput, l: HeadOutput, fields: Mapping[str, Tensor] | None = None, progress: float = 0.0
    ) -> LossOutput: ...

    def refit(self, head: nn.Module, w: HeadOutput, l: HeadOutput, users: Tensor | None) -> dict[str, float]:
        """Kinds with ``refits``: before each epoch, update the head's non-gradient state (e.g. MaxMin's user
        groups) from its outputs over every training pair (``users``: each pair's user row). Returns metrics."""
        return {}

    def fit_new_users(
        self, head: nn.Module, chosen: Tensor, rejected: Tensor, prompt: Tensor | None, users: Tensor, count: int
    ) -> None:
        """Per-user kinds: append ``count`` users to the head and fit them on their pairs alone, everything else
        fixed (``chosen``/``rejected``/``prompt``: the backbone's hidden states of the pairs, ``users``: each pair's
        new user row)."""
        raise TypeError(f"model kind {self.name!r} has no users to fit")

    def reward(self, out: HeadOutput) -> Tensor:
        """One standardised reward per response, [N] (the first reward column by default)."""
        if not self.has_reward:
            raise TypeError(f"model kind {self.name!r} is pairwise: it has no scalar reward; use its preferences")
        return out["scores"][:, 0]

    def prob(self, a: HeadOutput, b: HeadOutput) -> Tensor:
        return torch.sigmoid(self.logit(a, b))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Kind({self.name}: {args})"


_REGISTRY: dict[str, KindSpec] = {}


def _params_model(name: str, cls: type) -> tuple[type[BaseModel], dict[str, Any]]:
    """A strict pydantic model of ``cls.__init__``'s keyword-only parameters (each needs a default)."""
    init = cls.__init__  # type: ignore[misc]
    hints = get_type_hints(init, include_extras=True)
    fields: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for p in inspect.signature(init).parameters.values():
        if p.name == "self":
            continue
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"model kind {name!r}: parameter {p.name!r} must be keyword-only")
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"model kind {name!r}: parameter {p.name!r} needs a default (the paper's)")
        if p.name == "name":
            raise TypeError(f"model kind {name!r}: parameter name 'name' is reserved by the config format")
        fields[p.name] = (hints[p.name], p.default)
        defaults[p.name] = p.default
    model = create_model(f"{name}_kind_params", __config__=ConfigDict(extra="forbid", strict=False), **fields)
    return model, defaults


def register_kind(name: str, *, paper: str, formula: str) -> Callable[[type[Kind]], type[Kind]]:
    """Class decorator: register a ``Kind`` subclass under ``name``. Registering a name twice is an error."""

    def deco(cls: type[Kind]) -> type[Kind]:
        if name in _REGISTRY:
            raise ValueError(f"model kind {name!r} is registered twice")
        if not (isinstance(cls, type) and issubclass(cls, Kind)):
            raise TypeError(f"model kind {name!r}: {cls!r} is not a Kind subclass")
        params, defaults = _params_model(name, cls)
        doc = inspect.getdoc(cls) or ""
        cls.spec = KindSpec(
            name=name,
            cls=cls,
            params=params,
            paper=paper,
            formula=formula,
            description=doc.split("\n\n")[0].replace("\n", " "),
            defaults=defaults,
        )
        _REGISTRY[name] = cls.spec
        init = cls.__init__

        @functools.wraps(init)
        def validated_init(self: Kind, **params: Any) -> None:
            # constructing a kind directly validates like build_kind, and keeps the parameters for its card
            checked = validate_params(cls.spec, params)
            init(self, **checked)
            self.params = checked

        cls.__init__ = validated_init  # type: ignore[method-assign]
        return cls

    return deco


def _ensure_loaded() -> None:
    # Importing the modules runs their @register_kind decorators.
    import duelist.rewards.bt
    import duelist.rewards.crm
    import duelist.rewards.gpm
    import duelist.rewards.maxmin
    import duelist.rewards.pal  # noqa: F401


def registry() -> dict[str, KindSpec]:
    _ensure_loaded()
    return dict(_REGISTRY)


def get_spec(name: Any, prefix: str = "kind") -> KindSpec:
    specs = registry()
    if not isinstance(name, str) or name not in specs:
        raise KindConfigError(f"{prefix}.name: unknown model kind {name!r}; valid kinds: {', '.join(sorted(specs))}")
    return specs[name]


def validate_params(spec: KindSpec, params: Mapping[str, Any], prefix: str = "kind") -> dict[str, Any]:
    """Validate ``params`` against the kind's signature; errors name ``prefix.key`` and list valid keys."""
    try:
        return spec.params(**params).model_dump()
    except ValidationError as e:
        valid = ", ".join(spec.describe_params()) or "none"
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            msg = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
            got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" else ""
            lines.append(f"{prefix}.{key}: {msg}{got}")
        raise KindConfigError(
            f"invalid parameters for model kind {spec.name!r}: " + "; ".join(lines) + f". Valid parameters: {valid}"
        ) from None


def get_kind(name: str, **params: Any) -> Kind:
    """``get_kind("bt", center_rewards_coefficient=0.01)`` → a bound kind; unknown names and bad parameters
    raise ``KindConfigError`` listing what is valid."""
    return build_kind({"name": name, **params})


def build_kind(config: Mapping[str, Any], prefix: str = "kind") -> Kind:
    """Build a kind from a config mapping ``{name: ..., <params>}``."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise KindConfigError(
            f"{prefix}: expected a mapping with a name, e.g. {{name: bt}}; valid kinds: {', '.join(sorted(registry()))}"
        )
    config = dict(config)
    spec = get_spec(config.pop("name"), prefix)
    return spec.cls(**validate_params(spec, config, prefix))


def list_kinds() -> list[dict[str, Any]]:
    """Each kind's name, paper, formula, parameters with defaults, and what its head reads."""
    out = []
    for s in sorted(registry().values(), key=lambda s: s.name):
        cls = s.cls(**s.defaults)  # what it reads with its default parameters
        reads = ["last token"]
        reads += ["prompt's last token"] if cls.reads_prompt else []
        reads += ["user id"] if cls.reads_user else []
        reads += [f"{cls.backbones} backbones"] if cls.backbones > 1 else []
        out.append(
            {
                "name": s.name,
                "paper": s.paper,
                "formula": s.formula,
                "description": s.description,
                "params": dict(s.defaults),
                "param_docs": s.describe_params(),
                "reads": reads,
                "output": "scalar reward" if cls.has_reward else "pairwise preference",
            }
        )
    return out
