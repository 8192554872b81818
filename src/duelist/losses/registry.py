"""The loss registry: every loss is a pure function registered once, with its parameters declared
in its own signature.

A loss is ``fn(stats: PreferenceStats, *, p1=default, ...) -> LossOutput``. The keyword-only
parameters, their type hints (``Annotated[float, Field(gt=0)]`` for constraints) and defaults are the
single source for validation, CLI/config errors, ``duelist losses`` and the docs table. The trainer
never looks at a loss name: it asks the spec what inputs the loss needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from duelist.losses.stats import LossOutput, PreferenceStats

LossFn = Callable[..., LossOutput]


class LossConfigError(ValueError):
    """A loss name or parameter that the registry cannot accept; the message lists what is valid."""


@dataclass(frozen=True)
class LossSpec:
    """What the registry knows about one loss."""

    name: str
    fn: LossFn
    params: type[BaseModel]
    paper: str
    formula: str
    needs_reference: bool = True
    length_normalized: bool = False  # uses log-probs averaged over response tokens
    token_level: bool = False  # needs per-token log-probs and masks
    extra_fields: tuple[str, ...] = ()  # fields of ``PreferenceStats.extra`` it reads
    needs_token_kl: bool = False  # needs per-token KL(π_ref ‖ π_θ) over the full vocabulary
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs(self) -> list[str]:
        """Human-readable list of inputs beyond policy sequence log-probs."""
        out = ["reference" if self.needs_reference else "no reference"]
        out.append("mean log-probs" if self.length_normalized else "summed log-probs")
        if self.token_level:
            out.append("token log-probs")
        if self.needs_token_kl:
            out.append("token KL (live reference)")
        out.extend(f"extra: {f}" for f in self.extra_fields)
        return out


_REGISTRY: dict[str, LossSpec] = {}


def _params_model(name: str, fn: LossFn) -> tuple[type[BaseModel], dict[str, Any]]:
    """Build a strict pydantic model from ``fn``'s keyword-only parameters."""
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"loss {name!r}: parameter {p.name!r} needs a default (the paper's)")
        fields[p.name] = (hints[p.name], p.default)
        defaults[p.name] = p.default
    model = create_model(f"{name}_params", __config__=ConfigDict(extra="forbid", strict=False), **fields)
    return model, defaults


def register_loss(
    name: str,
    *,
    paper: str,
    formula: str,
    needs_reference: bool = True,
    length_normalized: bool = False,
    token_level: bool = False,
    extra_fields: tuple[str, ...] = (),
    needs_token_kl: bool = False,
) -> Callable[[LossFn], LossFn]:
    """Decorator: register ``fn`` under ``name``. Registering a name twice is an error."""

    def deco(fn: LossFn) -> LossFn:
        if name in _REGISTRY:
            raise ValueError(f"loss {name!r} is registered twice")
        params, defaults = _params_model(name, fn)
        doc = inspect.getdoc(fn) or ""
        _REGISTRY[name] = LossSpec(
            name=name,
            fn=fn,
            params=params,
            paper=paper,
            formula=formula,
            needs_reference=needs_reference,
            length_normalized=length_normalized,
            token_level=token_level,
            extra_fields=extra_fields,
            needs_token_kl=needs_token_kl,
            description=doc.split("\n\n")[0].replace("\n", " "),
            defaults=defaults,
        )
        return fn

    return deco


def _ensure_loaded() -> None:
    # Importing the modules runs their @register_loss decorators.
    import duelist.losses.pairwise  # noqa: F401


def registry() -> dict[str, LossSpec]:
    _ensure_loaded()
    return dict(_REGISTRY)


def get_spec(name: str) -> LossSpec:
    specs = registry()
    if name not in specs:
        raise LossConfigError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(specs))}")
    return specs[name]


def validate_params(spec: LossSpec, params: Mapping[str, Any], prefix: str = "loss") -> dict[str, Any]:
    """Validate ``params`` against the loss's signature; errors name ``prefix.key`` and list valid keys."""
    try:
        return spec.params(**params).model_dump()
    except ValidationError as e:
        valid = ", ".join(f"{k} (default {v!r})" for k, v in spec.defaults.items()) or "none"
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            msg = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{prefix}.{key}: {msg}")
        raise LossConfigError(
            f"invalid parameters for loss {spec.name!r}: " + "; ".join(lines) + f". Valid parameters: {valid}"
        ) from None


class Loss:
    """A registered loss bound to validated parameters. Call it with keyword tensors or a
    ``PreferenceStats``; it returns per-example losses and a metrics dict."""

    def __init__(self, spec: LossSpec, params: Mapping[str, Any]):
        self.spec = spec
        self.params = validate_params(spec, params)

    @property
    def needs_reference(self) -> bool:
        return self.spec.needs_reference

    @property
    def needs_token_kl(self) -> bool:
        return self.spec.needs_token_kl

    def __call__(self, stats: PreferenceStats | None = None, /, **tensors: Any) -> LossOutput:
        if stats is None:
            stats = PreferenceStats.from_kwargs(**tensors)
        elif tensors:
            raise TypeError("pass either a PreferenceStats or keyword tensors, not both")
        stats.check(self.spec)
        return self.spec.fn(stats, **self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Loss({self.spec.name}: {args})"


def get_loss(name: str, **params: Any) -> Loss:
    """``get_loss("dpo", beta=0.1)`` → a callable loss. Unknown names and bad parameters raise
    ``LossConfigError`` listing what is valid."""
    return Loss(get_spec(name), params)


def list_losses() -> list[dict[str, Any]]:
    """Each loss's name, paper, formula, parameters with defaults, and what it needs."""
    return [
        {
            "name": s.name,
            "paper": s.paper,
            "formula": s.formula,
            "params": dict(s.defaults),
            "needs": s.needs,
            "needs_reference": s.needs_reference,
            "length_normalized": s.length_normalized,
            "token_level": s.token_level,
            "extra_fields": list(s.extra_fields),
        }
        for s in sorted(registry().values(), key=lambda s: s.name)
    ]


def build_loss(config: Mapping[str, Any]) -> Loss:
    """Build a loss from a config mapping ``{name: ..., <params>}``."""
    config = dict(config)
    if "name" not in config:
        raise LossConfigError(f"loss.name is required; valid losses: {', '.join(sorted(registry()))}")
    name = config.pop("name")
    return get_loss(name, **config)
