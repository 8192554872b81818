"""``duelist check``: what training would see, without training (and without loading weights).

It runs every check a run makes before its first step, in the same order and with the same functions
(config → data read and validated → tokenizer → token lengths and truncation → batch plan), and reports
what each found: records kept and skipped, the data's format, token-length percentiles, how many pairs
the length limits cut, steps and epochs, and the state of the output folder (empty, a run to resume,
held by another run). The model is resolved to its config and parameter count on PyTorch's ``meta``
device; its weights are not read (the embedded default needs its one-time conversion, which is cached).

What a config trains on is checked by one function per kind of training data: ``check_pairs`` for
preference pairs (``data:``); a config section of another kind (e.g. prompts for online training) adds its
own function and a line in ``check``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from duelist.config import Config, ConfigError, DataConfig, ModelConfig
from duelist.data.formats import Bounds, validate
from duelist.data.sources import DataError, read_records

PERCENTILES = (50, 90, 99)


def percentiles(values: Sequence[int]) -> dict[str, int]:
    """Nearest-rank percentiles (the smallest value with at least q% of the values at or below it) and
    the maximum; every reported length is one that occurs in the data."""
    v = sorted(values)
    if not v:
        return {**{f"p{q}": 0 for q in PERCENTILES}, "max": 0}
    return {**{f"p{q}": v[max(1, math.ceil(q / 100 * len(v))) - 1] for q in PERCENTILES}, "max": v[-1]}


@dataclass
class PairsReport:
    """What ``check_pairs`` found in a preference data set."""

    source: str
    split: str
    records: int  # read from the source
    used: int  # after data.limit
    kept: int  # valid examples
    invalid: list[str]  # every invalid record's error (file, record, field)
    on_invalid: str
    format: str  # standard | conversational, possibly with ", implicit prompt"
    lengths: dict[str, dict[str, int]]  # prompt / chosen / rejected → percentiles of token counts, untruncated
    over_limits: int  # pairs longer than max_length or max_prompt_length
    max_length: int
    max_prompt_length: int
    truncation: str
    pairs: int  # pairs training would use (kept minus those dropped by truncation=drop)


def check_pairs(data: DataConfig, fields: Mapping[str, Bounds], tokenizer: Callable[[], Any]) -> PairsReport:
    """Read, validate and tokenize preference pairs as training does (``data.*``), keeping every invalid
    record's error instead of stopping at the first. ``fields``: numeric per-pair fields the loss reads;
    ``tokenizer``: returns the policy's tokenizer (called once the data is known to be valid)."""
    from duelist.data.tokenize import PairTokenizer

    records = read_records(data.train, data.split)
    used = records[: data.limit] if data.limit else records
    checked = validate(used, "skip", fields)
    enc = PairTokenizer(tokenizer(), data.max_length, data.max_prompt_length, data.truncation)
    lengths: dict[str, list[int]] = {"prompt": [], "chosen": [], "rejected": []}
    over, pairs = 0, 0
    for ex in checked.examples:
        ids = enc.token_ids(ex)
        for name, seq in zip(lengths, ids, strict=True):
            lengths[name].append(len(seq))
        fitted = enc.fit(*ids)
        over += fitted is None or fitted.truncated
        pairs += fitted is not None
    if not pairs:
        raise DataError(f"every pair of {data.train} is longer than data.max_length={data.max_length}")
    return PairsReport(
        source=str(data.train),
        split=data.split,
        records=len(records),
        used=len(used),
        kept=len(checked.examples),
        invalid=[str(e) for e in checked.skipped],
        on_invalid=data.on_invalid,
        format=checked.format,
        lengths={k: percentiles(v) for k, v in lengths.items()},
        over_limits=over,
        max_length=data.max_length,
        max_prompt_length=data.max_prompt_length,
        truncation=data.truncation,
        pairs=pairs,
    )


@dataclass
class ModelReport:
    source: str
    path: str
    architecture: str
    parameters: int
    trainable: int
    vocabulary: int
    chat_template: bool
    pad_token: str


def _first_line(e: BaseException) -> str:
    return next(iter(str(e).strip().splitlines()), type(e).__name__)


def resolve_model(cfg: ModelConfig) -> tuple[ModelReport, Any]:
    """The policy's tokenizer (loaded) and its architecture and parameter counts (on the meta device,
    LoRA applied): everything but the weights. A model that cannot be found is a ``ConfigError``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from duelist.models.load import default_model_dir, load_tokenizer, model_source

    try:
        tok = load_tokenizer(cfg)
        trust = {"trust_remote_code": cfg.trust_remote_code}
        if cfg.name.endswith(".gguf"):
            path = Path(cfg.name)
            mcfg = AutoConfig.from_pretrained(path.parent, gguf_file=path.name, **trust)
        else:
            path = default_model_dir() if cfg.name == "default" else Path(cfg.name)
            mcfg = AutoConfig.from_pretrained(str(path), gguf_file=cfg.gguf_file, **trust)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.name={cfg.name!r}: cannot load its tokenizer and config ({_first_line(e)})") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(mcfg, **trust)
        if cfg.lora is not None:
            from peft import LoraConfig, get_peft_model

            lora = cfg.lora
            model = get_peft_model(
                model,
                LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                           target_modules=lora.target_modules, task_type="CAUSAL_LM"),
            )
    params = list(model.parameters())
    report = ModelReport(
        source=model_source(cfg),
        path=str(path),
        architecture=type(model.get_base_model() if cfg.lora else model).__name__,
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        vocabulary=len(tok),
        chat_template=getattr(tok, "chat_template", None) is not None,
        pad_token=str(tok.pad_token) + (" (= eos)" if tok.pad_token_id == tok.eos_token_id else ""),
    )
    return report, tok


@dataclass
class PlanReport:
    steps: int
    batch_size: int
    epochs: float
    micro_batch: int
    grad_accum: int
    warmup_steps: int
    schedule: str
    checkpoints: list[int]


def plan_report(cfg: Config, pairs: int) -> PlanReport:
    """Steps and epochs as ``BatchPlan`` counts them (one process; ``batch_size`` is global, so more
    processes change the micro-batch size, not the steps)."""
    from duelist.train.plan import BatchPlan
    from duelist.train.schedule import warmup_steps

    t = cfg.train
    try:
        plan = BatchPlan(pairs, t.batch_size, t.seed, 1, 0, t.grad_accum, cfg.data.shuffle)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    total = plan.total_steps(t.steps, t.epochs)
    saves = [s for s in range(t.save_every, total, t.save_every)] if t.save_every else []
    return PlanReport(
        steps=total,
        batch_size=t.batch_size,
        epochs=total * t.batch_size / pairs,
        micro_batch=plan.micro_batch_size,
        grad_accum=t.grad_accum,
        warmup_steps=warmup_steps(cfg.optim.warmup, total),
        schedule=cfg.optim.schedule,
        checkpoints=[*saves, total],
    )


def output_report(cfg: Config) -> str:
    """The output folder as a run would find it; reads, never writes."""
    from duelist.train.checkpoint import CheckpointError, latest_intact_checkpoint
    from duelist.train.lock import describe_holder, holder, run_files
    from duelist.train.resume_guard import math_changes

    out = Path(cfg.train.output_dir)
    busy = holder(out)
    if busy is not None:
        return f"{out}: in use by {describe_holder(busy)}; a run here now would stop"
    if not run_files(out):
        return f"{out}: empty, a new run starts here"
    try:
        found = latest_intact_checkpoint(out)
        ckpt = f"resumable from step {found.step}" if found else "no checkpoint"
        if found and found.note:
            ckpt += f" ({found.note})"
    except CheckpointError as e:
        ckpt = str(e)
    changes = math_changes(out, cfg)
    resume = (
        "--resume would refuse: " + "; ".join(str(c) for c in changes) if changes else "--resume keeps its settings"
    )
    return f"{out}: holds a run, {ckpt}; train needs --resume or --overwrite; {resume}"


@dataclass
class Report:
    config: str
    loss: str
    reference: str
    model: ModelReport
    data: PairsReport
    plan: PlanReport
    output: str
    aux_models: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return not (self.data.invalid and self.data.on_invalid == "error")


def _reference(cfg: Config, loss: Any) -> str:
    from duelist.train.offline import reference_mode

    try:
        return reference_mode(cfg, loss)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _aux_models(cfg: Config, loss: Any, vocab: dict[str, int]) -> list[str]:
    """Each frozen model the loss reads: set, found, and sharing the policy's tokenizer."""
    from duelist.losses import LossConfigError

    out = []
    for m in loss.aux_models:
        if m.source is None:
            raise LossConfigError(f"{m.key} is required to train with loss {loss.name!r}")
        if m.source != "reference":
            report, tok = resolve_model(ModelConfig(name=m.source, dtype=cfg.model.dtype))
            if tok.get_vocab() != vocab:
                raise LossConfigError(f"{m.key}={m.source!r}: its tokenizer differs from the policy's")
            out.append(f"{m.key}: {report.source} ({report.architecture}, {report.parameters:,} parameters)")
        else:
            out.append(f"{m.key}: the reference")
    return out


def check(cfg: Config, label: str = "") -> Report:
    """Everything ``duelist train`` checks before its first step; raises the error training would."""
    from duelist.losses import build_loss

    loss = build_loss(cfg.loss)
    reference = _reference(cfg, loss)
    resolved: dict[str, Any] = {}

    def tokenizer() -> Any:
        resolved["model"], resolved["tok"] = resolve_model(cfg.model)
        return resolved["tok"]

    data = check_pairs(cfg.data, loss.data_fields, tokenizer)
    aux = _aux_models(cfg, loss, resolved["tok"].get_vocab())
    return Report(
        config=label,
        loss=repr(loss),
        reference=reference,
        model=resolved["model"],
        data=data,
        plan=plan_report(cfg, data.pairs),
        output=output_report(cfg),
        aux_models=aux,
    )


def render(r: Report) -> str:
    """The report as aligned text lines."""
    d, m, p = r.data, r.model, r.plan
    lora = f", {m.trainable:,} trainable (LoRA)" if m.trainable != m.parameters else ", all trainable"
    limited = f", first {d.used} used (data.limit)" if d.used != d.records else ""
    skipped = (
        "none invalid"
        if not d.invalid
        else f"{len(d.invalid)} invalid"
        + (" (skipped: data.on_invalid=skip)" if d.on_invalid == "skip" else " (training would stop)")
    )
    lines = [
        f"config     {r.config}",
        f"loss       {r.loss}; reference: {r.reference}",
        *(f"aux model  {a}" for a in r.aux_models),
        f"model      {m.source}: {m.architecture}, {m.parameters:,} parameters{lora} (weights not loaded)",
        f"tokenizer  {m.path}: vocabulary {m.vocabulary:,}, chat template {'yes' if m.chat_template else 'no'}, "
        f"pad {m.pad_token}",
        f"data       {d.source} (split {d.split}): {d.records} records{limited}, {d.kept} valid, {skipped}",
        *(f"  invalid  {e}" for e in d.invalid),
        f"format     {d.format}",
        "tokens     untruncated " + " ".join(f"{k:>6}" for k in d.lengths["prompt"]),
        *(f"           {name:<11} " + " ".join(f"{v:>6}" for v in d.lengths[name].values()) for name in d.lengths),
        f"limits     max_length {d.max_length}, max_prompt_length {d.max_prompt_length}: {d.over_limits} of {d.kept} "
        "pairs over the limits, "
        + ("truncated (data.truncation=keep_end)" if d.truncation == "keep_end" else "dropped (data.truncation=drop)"),
        f"plan       {p.steps} steps × {p.batch_size} pairs = {p.epochs:.2f} epochs of {d.pairs} pairs"
        + (" (were the invalid records skipped)" if not r.ok else "")
        + "; "
        f"micro-batch {p.micro_batch} × {p.grad_accum} accumulation (1 process); warm-up {p.warmup_steps} steps, "
        f"{p.schedule}; checkpoints at step {', '.join(map(str, p.checkpoints))}",
        f"output     {r.output}",
    ]
    return "\n".join(lines)
