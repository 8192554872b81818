"""The loss registry: every loss is a pure function registered once, with its parameters declared
in its own signature.

A loss is ``fn(stats: PreferenceStats, *, p1=default, ...) -> LossOutput`` (or, for a pointwise loss
declared with ``inputs="samples"``, ``fn(stats: SampleStats, ...)``: one response per example). The keyword-only
parameters, their type hints (``Annotated[float, Field(gt=0)]`` for constraints) and defaults are the
single source for validation, CLI/config errors, ``duelist losses`` and the docs table. The trainer
never looks at a loss name: it asks the built loss what it needs (``needs_reference``,
``needs_token_kl``, ``data_fields``, ``aux_models``) and hands it a ``PreferenceStats``.

Config forms (``build_loss``):

* one loss: ``{name: dpo, beta: 0.1}``;
* a weighted sum of registered losses: ``{name: sum, terms: [{name: dpo, beta: 0.1}, {name: sft,
  weight: 0.005}]}``. Each term is ``{name, weight (default 1), <params>}``; the sum needs the union of
  its terms' inputs. ``sum`` is a reserved word, not a registered loss: a new ``name`` replaces the
  whole ``loss`` section when configs are merged, so ``loss.name=sum`` cannot inherit the default
  loss's parameters by accident.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Literal, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from duelist.losses.stats import LossOutput, Needs, PreferenceStats, SampleStats

LossFn = Callable[..., LossOutput]
Bounds = tuple[float | None, float | None]
Inputs = Literal["pairs", "samples"]
Stats = PreferenceStats | SampleStats
COMBINATOR = "sum"


class LossConfigError(ValueError):
    """A loss name or parameter that the registry cannot accept; the message lists what is valid."""


def model_fields(prefix: str) -> tuple[str, str]:
    """Names of the per-token log-prob inputs an auxiliary model provides (``rm`` → ``rm_chosen_token_logps``,
    ``rm_rejected_token_logps``)."""
    return f"{prefix}_chosen_token_logps", f"{prefix}_rejected_token_logps"


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
    # names of ``PreferenceStats.extra`` inputs it reads (or a function of the bound parameters)
    extra_fields: tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...]] = ()
    needs_token_kl: bool = False  # needs per-token KL(π_ref ‖ π_θ) over the full vocabulary
    field_bounds: Mapping[str, Bounds] = field(default_factory=dict)  # allowed range of per-pair data fields
    models: Mapping[str, str] = field(default_factory=dict)  # parameter naming a model → prefix of its inputs
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    inputs: Inputs = "pairs"  # "samples": a pointwise loss on single responses (SampleStats)

    def extra_fields_for(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(self.extra_fields(params)) if callable(self.extra_fields) else tuple(self.extra_fields)

    def needs_for(self, params: Mapping[str, Any]) -> Needs:
        return Needs(
            reference=self.needs_reference,
            lengths=self.length_normalized,
            token_level=self.token_level,
            token_kl=self.needs_token_kl,
            extra_fields=self.extra_fields_for(params),
        )

    @property
    def model_provided(self) -> tuple[str, ...]:
        return tuple(f for prefix in self.models.values() for f in model_fields(prefix))

    @property
    def needs(self) -> list[str]:
        """Human-readable list of inputs beyond policy sequence log-probs (with default parameters)."""
        out = ["single responses" if self.inputs == "samples" else "pairs"]
        out.append("reference" if self.needs_reference else "no reference")
        out.append("mean log-probs" if self.length_normalized else "summed log-probs")
        if self.token_level:
            out.append("token log-probs")
        if self.needs_token_kl:
            out.append("token KL (live reference)")
        out.extend(f"model: {p}" for p in self.models)
        provided = set(self.model_provided)
        out.extend(f"extra: {f}" for f in self.extra_fields_for(self.defaults) if f not in provided)
        return out

    def describe_params(self) -> list[str]:
        """``beta=0.1 (> 0)``-style descriptions of every parameter, from the signature."""
        return [describe_param(self, name) for name in self.defaults]


_REGISTRY: dict[str, LossSpec] = {}


def describe_param(spec: LossSpec, name: str) -> str:
    info = spec.params.model_fields[name]
    ann = info.annotation
    notes: list[str] = []
    if get_origin(ann) is Literal:
        notes.append(" | ".join(str(a) for a in get_args(ann)))
    for m in info.metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if getattr(m, attr, None) is not None:
                notes.append(f"{sym} {getattr(m, attr)}")
    if ann is bool:
        notes.append("bool")
    default = spec.defaults[name]
    shown = f"'{default}'" if isinstance(default, str) else repr(default)
    return f"{name}={shown}" + (f" ({', '.join(notes)})" if notes else "")


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
        if p.name in ("name", "weight", "terms"):
            raise TypeError(f"loss {name!r}: parameter name {p.name!r} is reserved by the config format")
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
    extra_fields: tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...]] = (),
    needs_token_kl: bool = False,
    field_bounds: Mapping[str, Bounds] | None = None,
    models: Mapping[str, str] | None = None,
    inputs: Inputs = "pairs",
) -> Callable[[LossFn], LossFn]:
    """Decorator: register ``fn`` under ``name``. Registering a name twice is an error.

    ``extra_fields`` names the ``PreferenceStats.extra`` inputs the loss reads: per-pair numbers that the
    trainer carries from the data records (``field_bounds`` gives their allowed range), and the per-token
    log-probs of auxiliary frozen models: ``models`` maps a parameter of the loss that names a model
    (a directory, or ``reference``) to the prefix of the inputs it provides (see ``model_fields``).
    ``inputs="samples"`` declares a pointwise loss: it receives a ``SampleStats`` of single responses.
    """

    def deco(fn: LossFn) -> LossFn:
        if name in _REGISTRY:
            raise ValueError(f"loss {name!r} is registered twice")
        if name == COMBINATOR:
            raise ValueError(f"{COMBINATOR!r} is reserved for weighted sums of losses")
        params, defaults = _params_model(name, fn)
        for param in models or {}:
            if param not in defaults:
                raise TypeError(f"loss {name!r}: models names {param!r}, which is not a parameter")
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
            field_bounds=dict(field_bounds or {}),
            models=dict(models or {}),
            description=doc.split("\n\n")[0].replace("\n", " "),
            defaults=defaults,
            inputs=inputs,
        )
        return fn

    return deco


def _ensure_loaded() -> None:
    # Importing the modules runs their @register_loss decorators.
    import duelist.losses.online
    import duelist.losses.pairwise
    import duelist.losses.regularizers
    import duelist.losses.selfplay
    import duelist.losses.token  # noqa: F401


def registry() -> dict[str, LossSpec]:
    _ensure_loaded()
    return dict(_REGISTRY)


def get_spec(name: Any, prefix: str = "loss") -> LossSpec:
    specs = registry()
    if not isinstance(name, str) or name not in specs:
        raise LossConfigError(
            f"{prefix}.name: unknown loss {name!r}; valid losses: {', '.join(sorted(specs))} "
            f"(or {COMBINATOR!r} with {prefix}.terms for a weighted sum)"
        )
    return specs[name]


def validate_params(
    spec: LossSpec, params: Mapping[str, Any], prefix: str = "loss", what: str = "loss"
) -> dict[str, Any]:
    """Validate ``params`` against the signature of the registered ``what`` (a loss, an online method);
    errors name ``prefix.key`` and list valid keys."""
    try:
        return spec.params(**params).model_dump()
    except ValidationError as e:
        valid = ", ".join(describe_param(spec, k) for k in spec.defaults) or "none"
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            msg = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
            got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" else ""
            lines.append(f"{prefix}.{key}: {msg}{got}")
        raise LossConfigError(
            f"invalid parameters for {what} {spec.name!r}: " + "; ".join(lines) + f". Valid parameters: {valid}"
        ) from None


@dataclass(frozen=True)
class AuxModel:
    """A frozen model whose per-token log-probs a loss reads (e.g. TGDPO's token reward model)."""

    prefix: str  # the inputs it provides: model_fields(prefix)
    key: str  # the config key that names it, for error messages (e.g. ``loss.reward_model``)
    source: str | None  # a model directory / hub id, ``reference``, or None (not set)


class LossBase:
    """What the trainer may ask of any built loss: its inputs, never its name's meaning."""

    name: str
    needs: Needs
    data_fields: dict[str, Bounds]
    aux_models: tuple[AuxModel, ...]
    inputs: Inputs  # what one example is: a pair (PreferenceStats) or a single response (SampleStats)

    @property
    def needs_reference(self) -> bool:
        return self.needs.reference

    @property
    def needs_token_kl(self) -> bool:
        return self.needs.token_kl

    @property
    def token_level(self) -> bool:
        return self.needs.token_level

    @property
    def length_normalized(self) -> bool:
        return self.needs.lengths

    @property
    def extra_fields(self) -> tuple[str, ...]:
        return self.needs.extra_fields

    def compute(self, stats: Stats) -> LossOutput:
        raise NotImplementedError

    def __call__(self, stats: Stats | None = None, /, **tensors: Any) -> LossOutput:
        if stats is None:
            stats = PreferenceStats.from_kwargs(**tensors) if self.inputs == "pairs" else SampleStats(**tensors)
        elif self.inputs == "samples" and not isinstance(stats, SampleStats):
            raise TypeError(f"loss {self.name!r} is pointwise: it takes a SampleStats of single responses")
        elif self.inputs == "pairs" and not isinstance(stats, PreferenceStats):
            raise TypeError(f"loss {self.name!r} takes a PreferenceStats of pairs")
        elif tensors:
            raise TypeError("pass either a PreferenceStats or keyword tensors, not both")
        stats.check(self.needs, self.name)
        out = self.compute(stats)
        if out.losses.shape != (stats.batch_size,):
            raise RuntimeError(f"loss {self.name!r} returned shape {tuple(out.losses.shape)}, not per-example")
        return out


class Loss(LossBase):
    """A registered loss bound to validated parameters. Call it with keyword tensors or a
    ``PreferenceStats``; it returns per-example losses and a metrics dict."""

    def __init__(self, spec: LossSpec, params: Mapping[str, Any], prefix: str = "loss"):
        self.spec = spec
        self.name = spec.name
        self.inputs = spec.inputs
        self.params = validate_params(spec, params, prefix)
        self.needs = spec.needs_for(self.params)
        provided = set(spec.model_provided)
        self.data_fields = {
            f: spec.field_bounds.get(f, (None, None)) for f in self.needs.extra_fields if f not in provided
        }
        self.aux_models = tuple(
            AuxModel(pfx, f"{prefix}.{param}", self.params[param]) for param, pfx in spec.models.items()
        )

    def compute(self, stats: Stats) -> LossOutput:
        return self.spec.fn(stats, **self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Loss({self.spec.name}: {args})"


class WeightedSum(LossBase):
    """Σ_k w_k · L_k per example. Metrics: each term's own (unweighted) loss as ``loss/<term>``; the
    other metrics of the first term that reports them keep their names, later duplicates are prefixed
    ``<term>/``."""

    def __init__(self, terms: Sequence[tuple[float, Loss]]):
        if not terms:
            raise LossConfigError(f"loss.terms: a {COMBINATOR!r} needs at least one term")
        self.terms = list(terms)
        names = [t.name for _, t in self.terms]
        self.labels = [n if names.count(n) == 1 else f"{n}[{i}]" for i, n in enumerate(names)]
        shown = (f"{w:g}·{label}" for (w, _), label in zip(self.terms, self.labels, strict=True))
        self.name = f"{COMBINATOR}({' + '.join(shown)})"
        self.needs = reduce(lambda a, b: a | b, (t.needs for _, t in self.terms))
        kinds = {t.inputs for _, t in self.terms}
        if len(kinds) > 1:
            raise LossConfigError("loss.terms: pair losses and pointwise (single-response) losses cannot be summed")
        self.inputs = kinds.pop()
        self.data_fields: dict[str, Bounds] = {}
        for _, t in self.terms:
            for f, (lo, hi) in t.data_fields.items():
                plo, phi = self.data_fields.get(f, (None, None))
                lo = lo if plo is None else plo if lo is None else max(lo, plo)
                hi = hi if phi is None else phi if hi is None else min(hi, phi)
                self.data_fields[f] = (lo, hi)
        seen: dict[str, AuxModel] = {}
        for _, t in self.terms:
            for m in t.aux_models:
                if m.prefix in seen and seen[m.prefix].source != m.source:
                    raise LossConfigError(
                        f"{m.key}: {m.source!r} conflicts with {seen[m.prefix].key}={seen[m.prefix].source!r}; "
                        "terms of one sum share their auxiliary models"
                    )
                seen.setdefault(m.prefix, m)
        self.aux_models = tuple(seen.values())

    def compute(self, stats: Stats) -> LossOutput:
        total = None
        metrics: dict = {}
        for (w, term), label in zip(self.terms, self.labels, strict=True):
            out = term(stats)
            total = w * out.losses if total is None else total + w * out.losses
            metrics[f"loss/{label}"] = out.losses.detach()
            for k, v in out.metrics.items():
                metrics[k if k not in metrics else f"{label}/{k}"] = v
        assert total is not None
        return LossOutput(total, metrics)

    def __repr__(self) -> str:
        return f"WeightedSum({', '.join(f'{w:g}·{t!r}' for w, t in self.terms)})"


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
            "description": s.description,
            "params": dict(s.defaults),
            "param_docs": s.describe_params(),
            "needs": s.needs,
            "needs_reference": s.needs_reference,
            "length_normalized": s.length_normalized,
            "token_level": s.token_level,
            "needs_token_kl": s.needs_token_kl,
            "inputs": s.inputs,
            "extra_fields": list(s.extra_fields_for(s.defaults)),
            "models": dict(s.models),
        }
        for s in sorted(registry().values(), key=lambda s: s.name)
    ]


def _weight(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise LossConfigError(f"{key}: must be a finite number ≥ 0 (got {value!r})")
    return float(value)


def build_loss(config: Mapping[str, Any], prefix: str = "loss") -> Loss | WeightedSum:
    """Build a loss from a config mapping ``{name: ..., <params>}`` or ``{name: sum, terms: [...]}``."""
    if not isinstance(config, Mapping):
        raise LossConfigError(f"{prefix}: expected a mapping such as {{name: dpo, beta: 0.1}}, got {config!r}")
    config = dict(config)
    if "name" not in config:
        raise LossConfigError(f"{prefix}.name is required; valid losses: {', '.join(sorted(registry()))}")
    name = config.pop("name")
    if name != COMBINATOR:
        if "terms" in config:
            raise LossConfigError(
                f"{prefix}.terms: a weighted sum is written {prefix}: {{name: {COMBINATOR}, terms: [...]}} "
                f"({prefix}.name is {name!r})"
            )
        return Loss(get_spec(name, prefix), config, prefix)
    extra = sorted(set(config) - {"terms"})
    if extra:
        raise LossConfigError(f"{prefix}.{extra[0]}: unknown key for a {COMBINATOR!r}; valid keys: name, terms")
    terms = config.get("terms")
    if not isinstance(terms, list) or not terms:
        raise LossConfigError(f"{prefix}.terms: expected a non-empty list of {{name, weight, <params>}}, got {terms!r}")
    built = []
    for i, term in enumerate(terms):
        key = f"{prefix}.terms[{i}]"
        if not isinstance(term, Mapping) or "name" not in term:
            raise LossConfigError(f"{key}: expected a mapping with a name, e.g. {{name: sft, weight: 0.005}}")
        term = dict(term)
        tname = term.pop("name")
        if tname == COMBINATOR:
            raise LossConfigError(f"{key}.name: sums do not nest; list every term in {prefix}.terms")
        weight = _weight(term.pop("weight", 1.0), f"{key}.weight")
        built.append((weight, Loss(get_spec(tname, key), term, key)))
    return WeightedSum(built)
