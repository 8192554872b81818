"""Typed run configuration: YAML files plus ``dotted.key=value`` overrides.

Every section forbids unknown keys, so a typo is an error naming the key and listing the valid ones.
The ``loss`` section is checked against the loss registry (name and parameters).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from duelist.losses import LossConfigError, build_loss


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraConfig(Section):
    r: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class ModelConfig(Section):
    name: str = "default"
    """``default`` (embedded SmolLM2-135M-Instruct), an HF model directory, a hub id, or a ``.gguf`` file."""
    gguf_file: str | None = None
    trust_remote_code: bool = False
    """Let transformers run Python code shipped with the model (its ``auto_map``) when loading the model and
    its tokenizer. Off: such code runs only if you set this for a model whose code you trust."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """``auto``: float32 on CPU, bfloat16 on GPU."""
    lora: LoraConfig | None = None
    attn_implementation: str | None = None
    """transformers' attention (``sdpa``, ``eager``, ``flash_attention_2``, …; ``None``: its default) or
    ``eager_blocks``: eager attention without most of the masked upper triangle (duelist.models.attention)."""
    onednn_linear: bool | None = None
    """float32 linear layers on CPU through oneDNN instead of MKL (about 10% faster matmuls on AMD CPUs;
    ``duelist.models.onednn``). ``None``: on for a float32 model on an x86-64 CPU when PyTorch has oneDNN."""
    gradient_checkpointing: bool | float = False
    """``true`` recomputes every decoder layer in the backward pass instead of keeping its activations; a
    fraction in (0, 1) does so for that share of the layers, evenly spaced (selective checkpointing: memory
    saved and recompute paid both in proportion)."""

    @field_validator("gradient_checkpointing")
    @classmethod
    def _share(cls, v: bool | float) -> bool | float:
        if not isinstance(v, bool) and not 0 < v <= 1:
            raise ValueError(f"a share of layers must be in (0, 1], got {v}")
        return v


class RewardAugmentConfig(Section):
    """Goal-conditioned pairs from rated pairs (duelist.data.transforms.reward_augment)."""

    chosen: str = "score_chosen"
    """Record field with the chosen response's rating."""
    rejected: str = "score_rejected"
    low: float | None = None
    """Bottom of the rating scale named in the goal prompt (``None``: the data's smallest rating)."""
    high: float | None = None
    placement: Literal["system", "user"] = "system"
    drop_inconsistent: bool = True
    """Drop pairs whose chosen rating is below the rejected one."""


class DataConfig(Section):
    train: str = "positive-review"
    """A built-in task name, a file (.jsonl/.json/.parquet/.csv), a directory, or ``hf:<dataset name>``."""
    split: str = "train"
    max_length: int = Field(512, gt=1)
    max_prompt_length: int = Field(256, gt=0)
    truncation: Literal["keep_end", "drop"] = "keep_end"
    on_invalid: Literal["error", "skip"] = "error"
    shuffle: bool = True
    """Visit pairs in a seeded random order each epoch (``false``: file order)."""
    limit: int | None = Field(None, gt=0)
    reward_augment: RewardAugmentConfig | None = None
    """Relabel rated pairs into goal-conditioned pairs, both directions (the data set doubles)."""
    flip_rate: float = Field(0.0, ge=0, lt=0.5)
    """Label noise: swap chosen and rejected for this share of the pairs (seeded; each records ``flipped``)."""
    flip_seed: int = 0


class OptimConfig(Section):
    name: Literal["adamw", "sgd", "rmsprop"] = "adamw"
    """``adamw`` (default); ``sgd`` (plain, no momentum: exact minimisation in tests); ``rmsprop`` (SPPO's)."""
    lr: float = Field(5e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    warmup: float = Field(0.1, ge=0)
    """Warm-up length: a fraction of the run if < 1, else a number of steps."""
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    fused: bool | None = None
    """Fused AdamW kernel (one pass over each parameter); ``None`` = on for CUDA and CPU."""


class TrainConfig(Section):
    output_dir: str = "runs/default"
    seed: int = 0
    steps: int | None = Field(None, gt=0)
    """Optimizer steps; ``None`` = ``epochs`` passes over the data."""
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(8, gt=0)
    """Pairs per optimizer step, summed over processes and accumulation."""
    grad_accum: int = Field(1, gt=0)
    reference: Literal["auto", "precompute", "live", "none"] = "auto"
    """``auto``: none for reference-free losses, else live when the loss needs the reference's
    token distributions, else precomputed and cached on disk."""
    logprob_chunk: int = Field(1024, gt=0)
    """Response tokens per lm_head + log-softmax chunk (one chunk when ``logprob_recompute`` is false)."""
    logprob_recompute: bool | None = None
    """Recompute each chunk of logits in the backward pass (head memory O(chunk × vocabulary)); false keeps
    the softmax of every response token instead (4 · tokens · vocabulary bytes; one head matmul fewer).
    ``None``: keep it for each micro-batch whose softmax fits in ``duelist.models.logprobs.KEEP_PROBS_BYTES``
    (1 GiB), recompute otherwise."""
    compile: bool | None = None
    """``torch.compile`` the backbone (dynamic shapes): fuses the elementwise work between matmuls (about 5%
    faster on CPU at fixed lengths). The compile takes minutes on CPU and recurs when a batch crosses one of
    inductor's size thresholds, so it pays off in long runs only. ``None``: on for an offline run of at least
    ``duelist.train.learner.COMPILE_PAYBACK_UPDATES`` updates, when the steps it saves repay the compile."""
    layout: Literal["auto", "padded", "packed", "shared", "shared_packed"] = "auto"
    """How a micro-batch is laid out for the forward pass (see duelist.data.collate). ``auto``: ``packed``
    with flash attention, else ``shared`` (prompt computed once per pair, a row per pair)."""
    log_every: int = Field(1, gt=0)
    save_every: int = Field(0, ge=0)
    """Checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = Field(2, gt=0)
    progress: bool = True
    tensorboard: bool = True
    save_final: bool = True
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/inf per-pair loss, log-prob or gradient norm: ``stop`` the run before that update (naming the
    step, the quantity and the batch's records; the last checkpoint stays the newest), or ``skip`` the
    update (no optimizer step) and count it in the metric ``updates/skipped_nonfinite``."""
    threads: int | None = Field(None, gt=0)
    """CPU threads per process; ``None`` = the machine's cores shared among the processes on it."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """``bf16``: matmuls (backbone and head) under bfloat16 autocast, while weights, gradients, optimizer
    state, log-softmax and the loss stay in the model's dtype (TRL's default, ``bf16=True``). On CPUs with
    AVX512-BF16 or AMX the matmuls run about 2.3× faster; the reference is scored the same way."""
    keep_freed_memory: bool = True
    """On CPU (glibc): keep freed memory for reuse rather than returning it to the kernel, so later steps
    take no page faults (about 5% faster; resident memory stays at its peak between steps)."""

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v: Any) -> Any:
        return "no" if v is False else v  # YAML reads a bare ``no`` as false


class EvalConfig(Section):
    prompts: str | None = None
    """Held-out prompts: ``<task>:<split>`` or a file of records with a ``prompt`` field. Default: the
    training task's ``test`` split."""
    judge: str | None = None
    """A judge name; default: the task's oracle."""
    num_prompts: int = Field(128, gt=0)
    samples_per_prompt: int = Field(2, gt=0)
    max_new_tokens: int = Field(32, gt=0)
    temperature: float = Field(1.0, gt=0)
    batch_size: int = Field(64, gt=0)
    seed: int = 1234
    frontier: bool = True
    """Also measure the run's intermediate checkpoints (those ``train.save_every`` kept): the reward–KL frontier."""
    show_pairs: int = Field(3, ge=0)
    """Policy/reference sample pairs printed at random (seeded) in the terminal."""


DEFAULT_METHOD: dict[str, Any] = {"name": "online_dpo"}


class OnlineConfig(Section):
    """An online self-play run: each loop step is a round on ``train.batch_size`` prompts (``train.steps``
    rounds, or ``train.epochs`` passes over the prompts): sample K responses per prompt from the current
    policy, judge them, turn them into examples (the method), and take ``passes × updates_per_pass`` updates."""

    method: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_METHOD))
    """A registered online method and its parameters (``duelist methods``), e.g. ``{name: sppo, eta: 1000}``.
    The method names the loss; an online config has no ``loss`` section."""
    prompts: str = "positive-review:prompts"
    """Prompts: ``<task>:<split>`` or a file of records with a ``prompt`` field (text or messages)."""
    judge: str = "lexicon"
    """Any judge name (``duelist judges``)."""
    max_new_tokens: int = Field(32, gt=0)
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature; 1 samples π_t itself, which every method's theory assumes."""
    max_prompt_length: int = Field(256, gt=0)
    """Prompts longer than this keep their last tokens (and BOS)."""
    passes: int = Field(1, gt=0)
    """Passes over each round's examples (the reference is scored once, at the start of the round)."""
    updates_per_pass: int = Field(1, gt=0)
    """Optimizer steps per pass, each on an equal share of the round's examples."""
    prompts_per_chunk: int = Field(16, gt=0)
    """Prompts decoded together (each with its K samples)."""
    reference_samples: int | None = Field(None, ge=0)
    """Reference samples per prompt and round to measure the policy's win-rate against (``None``: 1 when
    the judge has no reward to report, else 0)."""


DEFAULT_LOSS: dict[str, Any] = {"name": "dpo", "beta": 0.1}
DEFAULT_KIND: dict[str, Any] = {"name": "bt"}


class RewardModelConfig(Section):
    """Train a reward or preference model on ``data.train`` instead of a policy (docs/reward_models.md): the
    ``model`` backbone (full or LoRA) with the kind's head read at each sequence's last token."""

    kind: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_KIND))
    """A registered model kind and its parameters (``duelist reward-kinds``), e.g. ``{name: gpm, k: 2}``."""
    backbone: Literal["train", "frozen"] = "train"
    """``train``: the backbone (or its LoRA adapters) trains with the head; ``frozen``: only the head trains, on
    the backbone's hidden states computed once per pair before the first step (a probe on fixed features)."""
    prompt_format: Literal["auto", "chat", "text"] = "auto"
    """How the saved model turns text prompts into tokens when it scores: ``chat`` (user and assistant turns under
    the chat template) or ``text``; ``auto``: as the training data is (conversations → chat)."""
    normalisation_pairs: int | None = Field(512, gt=0)
    """Training pairs whose rewards give the stored normalisation statistics (the first N; ``None``: all)."""

    @field_validator("kind")
    @classmethod
    def _check_kind(cls, v: dict[str, Any]) -> dict[str, Any]:
        from duelist.rewards import KindConfigError, build_kind

        try:
            build_kind(v, prefix="reward_model.kind")
        except KindConfigError as e:
            raise ValueError(str(e)) from None
        return v


class Config(Section):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    loss: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_LOSS))
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    online: OnlineConfig | None = None
    """Set for an online self-play run (prompts, judge, method); absent for training on a data set of pairs."""
    reward_model: RewardModelConfig | None = None
    """Set to train a reward or preference model (its kind) on the pairs of ``data``; there is no ``loss``."""

    @field_validator("loss")
    @classmethod
    def _check_loss(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            build_loss(v)
        except LossConfigError as e:
            raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _online_loss(self) -> Config:
        """An online run trains with its method's loss; ``loss`` records it (e.g. in the run's config.yaml)."""
        if self.online is not None:
            from duelist.online.registry import build_method

            try:
                loss = build_method(self.online.method).loss_config
            except LossConfigError as e:
                raise ValueError(str(e)) from None
            if "loss" in self.model_fields_set and self.loss != loss:
                raise ValueError(
                    f"an online run trains with its method's loss ({loss}); set its parameters under "
                    "online.method (e.g. online.method.beta=0.2), not in a loss section"
                )
            object.__setattr__(self, "loss", loss)
        return self

    @model_validator(mode="after")
    def _reward_model(self) -> Config:
        """A reward model trains with its kind's loss; a ``loss`` section or an ``online`` one makes no sense."""
        if self.reward_model is not None:
            if self.online is not None:
                raise ValueError("reward_model and online are exclusive: a reward model trains on a data set of pairs")
            if self.reward_model.backbone == "frozen" and self.model.lora is not None:
                raise ValueError("reward_model.backbone=frozen trains the head alone: remove model.lora")
            if "loss" in self.model_fields_set and self.loss != DEFAULT_LOSS:
                raise ValueError(
                    "a reward model trains with its kind's loss; set its parameters under reward_model.kind "
                    "(e.g. reward_model.kind.center_rewards_coefficient=0.01), not in a loss section"
                )
        return self


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["loss.beta=0.2", "train.steps=10"]`` → nested dict; values are parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. loss.beta=0.2)")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw != "" else None)
    return tree


def _merge(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    """Nested update. A registered unit written ``{name: ..., <params>}`` (the loss, the online method) keeps
    its parameters unless ``upd`` names another unit, which replaces it whole (its parameters differ)."""
    out = dict(base)
    for k, v in upd.items():
        old = out.get(k)
        if isinstance(v, dict) and isinstance(old, dict) and not ("name" in v and v["name"] != old.get("name")):
            out[k] = _merge(old, v)
        else:
            out[k] = v
    return out


def _format_error(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            section = _section_for(err["loc"][:-1])
            valid = ", ".join(section.model_fields) if section else ""
            lines.append(f"{key}: unknown key" + (f" (valid keys here: {valid})" if valid else ""))
        elif err["type"] == "value_error":
            lines.append(err["msg"].removeprefix("Value error, "))
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict) else ""
            lines.append(f"{key}: {err['msg']}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _section_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = Config
    for part in loc:
        f = model.model_fields.get(part) if isinstance(part, str) else None
        if f is None or not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)):
            ann = getattr(f, "annotation", None)
            args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
            if not args:
                return None
            model = args[0]
        else:
            model = f.annotation
    return model


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        tree = loaded
    return config_from_tree(tree, overrides)


def config_from_tree(tree: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A parsed config mapping (e.g. one entrant of a tournament file) with overrides, validated."""
    tree = _merge(tree, parse_overrides(overrides or []))
    if isinstance(tree.get("online"), dict):
        tree = _merge({"online": {"method": DEFAULT_METHOD}}, tree)
    else:
        tree = _merge({"loss": DEFAULT_LOSS}, tree)
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_error(e)) from None


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
