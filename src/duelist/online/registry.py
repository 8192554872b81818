"""The online-method registry: each self-play method is a small declared unit, registered once.

A method is a function ``build(groups, *, p1=default, ...) -> examples`` that turns one round's judged
samples (``duelist.sample.pairing.JudgedGroup``) into training examples; its keyword-only parameters, with
their type hints and defaults (the paper's), are the single source for validation, ``duelist methods``, the
docs and error messages, as for losses. The decorator declares the rest:

* ``loss``: the registered loss it trains with, as a function of its parameters;
* ``reference``: what the loss's reference log-probs are — ``initial`` (π_ref, the starting policy; a method
  may move it to the current policy every ``refresh_every`` rounds) or ``previous`` (π_t, the policy at the
  start of the round);
* ``anchors``: further log-probs the loss reads as per-example fields (``previous``: π_t's, for a loss whose
  reference is π_ref, like INPO's);
* ``opponent``: what the samples are judged against — ``self`` (the prompt's other samples) or ``mixture``
  (fresh samples of the token-level geometric mixture ν ∝ π_t^{1−β} π_ref^{β}, β = ``mixture(params)``; each
  policy sample then also carries log ν − log π_t as the field ``anchor_shift``);
* ``extragradient``: a round is a half step from π_t on its own samples, then a full step from the *saved*
  π_t (weights and optimizer state restored exactly) on samples of the half-step policy;
* ``momentum``: after each round, extrapolate the weights θ ← θ̂_t + α(θ̂_t − θ̂_{t−1}) (α = ``momentum(params)``);
* ``twin``: the ``duelist.games.dynamics`` algorithm this method reproduces on a one-token model with exact
  win-rates, and that algorithm's step size η, regularisation τ and options in terms of the method's
  parameters.

The online loop never looks at a method's name: it asks the built ``Method`` for these.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from duelist.data.tokenize import Example
from duelist.losses import LossBase, LossConfigError, build_loss
from duelist.losses.registry import _params_model, describe_param, validate_params
from duelist.sample.pairing import JudgedGroup

BuildFn = Callable[..., list[Example]]
Anchor = Literal["previous"]


@dataclass(frozen=True)
class Twin:
    """The tabular algorithm a method reproduces; ``step`` maps the method's parameters to the algorithm's
    ``eta``, ``tau`` (the game's regularisation) and any options; ``when``: the parameter values under which
    the twin is exact (e.g. ``pairing=all``), empty if always."""

    algorithm: str
    step: Callable[[Mapping[str, Any]], dict[str, float]]
    when: Mapping[str, Any]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    build: BuildFn
    params: type[BaseModel]
    defaults: Mapping[str, Any]
    paper: str
    rule: str
    loss: Callable[[Mapping[str, Any]], dict[str, Any]]
    reference: Literal["initial", "previous"]
    anchors: tuple[Anchor, ...]
    twin: Twin | None
    description: str
    opponent: Literal["self", "mixture"] = "self"
    mixture: Callable[[Mapping[str, Any]], float] | None = None
    extragradient: bool = False
    momentum: Callable[[Mapping[str, Any]], float] | None = None

    def describe_params(self) -> list[str]:
        return [describe_param(self, name) for name in self.defaults]  # type: ignore[arg-type]


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    paper: str,
    rule: str,
    loss: Callable[[Mapping[str, Any]], dict[str, Any]],
    reference: Literal["initial", "previous"],
    anchors: tuple[Anchor, ...] = (),
    twin: Twin | None = None,
    opponent: Literal["self", "mixture"] = "self",
    mixture: Callable[[Mapping[str, Any]], float] | None = None,
    extragradient: bool = False,
    momentum: Callable[[Mapping[str, Any]], float] | None = None,
) -> Callable[[BuildFn], BuildFn]:
    """Decorator: register ``fn`` as the online method ``name``. Registering a name twice is an error. A
    method's parameters must include ``samples`` (K, responses per prompt); a method with the ``initial``
    reference must include ``refresh_every`` (rounds between moves of the reference to the current policy;
    0 = never)."""

    def deco(fn: BuildFn) -> BuildFn:
        if name in _REGISTRY:
            raise ValueError(f"online method {name!r} is registered twice")
        params, defaults = _params_model(name, fn)
        if "samples" not in defaults:
            raise TypeError(f"online method {name!r}: a `samples` parameter (K) is required")
        if reference == "initial" and "refresh_every" not in defaults:
            raise TypeError(f"online method {name!r}: an `initial` reference needs a `refresh_every` parameter")
        if (opponent == "mixture") != (mixture is not None) or (opponent == "mixture") != ("opponents" in defaults):
            raise TypeError(f"online method {name!r}: a mixture opponent needs its `mixture` weight and an "
                            "`opponents` parameter (samples of ν per prompt), and only it does")
        doc = inspect.getdoc(fn) or ""
        _REGISTRY[name] = MethodSpec(
            name, fn, params, defaults, paper, rule, loss, reference, anchors, twin,
            doc.split("\n\n")[0].replace("\n", " "), opponent, mixture, extragradient, momentum,
        )
        return fn

    return deco


def registry() -> dict[str, MethodSpec]:
    import duelist.online.methods  # noqa: F401  (registers the methods)

    return dict(_REGISTRY)


def method_names() -> list[str]:
    return sorted(registry())


class Method:
    """A registered method bound to validated parameters."""

    def __init__(self, spec: MethodSpec, params: Mapping[str, Any], prefix: str = "online.method"):
        self.spec = spec
        self.name = spec.name
        self.params = validate_params(spec, params, prefix, "online method")  # type: ignore[arg-type]
        self.loss_config = spec.loss(self.params)
        self.loss: LossBase = build_loss(self.loss_config, prefix=f"{prefix} (its loss)")
        self.k: int = self.params["samples"]
        self.anchors = spec.anchors
        try:  # building from no groups runs the method's own checks across parameters
            spec.build([], **self.params)
        except ValueError as e:
            raise LossConfigError(f"{prefix}: {e}") from None

    @property
    def refresh_every(self) -> int:
        """Rounds between moves of the reference to the current policy (1: the previous iterate; 0: never)."""
        return 1 if self.spec.reference == "previous" else int(self.params["refresh_every"])

    def build(self, groups: Sequence[JudgedGroup]) -> list[Example]:
        return self.spec.build(groups, **self.params)

    @property
    def mixture(self) -> float | None:
        """β of the opponent ν ∝ π_t^{1−β} π_ref^{β} (None: the samples are judged against each other)."""
        return None if self.spec.mixture is None else float(self.spec.mixture(self.params))

    @property
    def momentum(self) -> float:
        return 0.0 if self.spec.momentum is None else float(self.spec.momentum(self.params))

    def twin(self) -> tuple[str, dict[str, float]] | None:
        """(games algorithm, its ``eta``, ``tau`` and options) if this parametrisation has an exact tabular twin."""
        t = self.spec.twin
        if t is None or any(self.params[k] != v for k, v in t.when.items()):
            return None
        return t.algorithm, t.step(self.params)

    def __repr__(self) -> str:
        return f"Method({self.name}: {', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def build_method(config: Mapping[str, Any], prefix: str = "online.method") -> Method:
    """``{name: sppo, eta: 1000}`` → a bound method; unknown names and bad parameters list what is valid."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise LossConfigError(f"{prefix}: expected a mapping with a name; valid methods: {', '.join(method_names())}")
    config = dict(config)
    name = config.pop("name")
    specs = registry()
    if name not in specs:
        valid = ", ".join(sorted(specs))
        raise LossConfigError(f"{prefix}.name: unknown online method {name!r}; valid methods: {valid}")
    return Method(specs[name], config, prefix)
