"""The online self-play source: each loop step is a round — sample, judge, build examples, score anchors.

Round t on this process's share of ``train.batch_size`` prompts:

1. sample K responses per prompt from the current policy π_t (``duelist.sample.samplers``; the prompt is
   prefilled once for its K samples), with their sampling log-probs;
2. ask the judge for each prompt's K×K preference matrix in one batched call, checked (finite, in [0, 1],
   P + Pᵀ = 1) — a bad answer stops the round naming judge and prompt (``judges.base.judge_checked``);
3. the method turns the judged samples into examples (pairs or single responses with numeric fields);
4. score the examples under the method's reference — π_ref (the initial policy, or the copy it was last
   moved to), or π_t (the policy as it is now, before the round's updates) — and any anchor fields, in the
   micro-batches training uses, so the first update starts from log-ratio exactly 0;
5. the loop takes ``online.passes × online.updates_per_pass`` updates; then the reference moves if the
   method says so.

Sampling is seeded by (seed, round, process), not by the global generator, so a run resumed at a round
boundary replays the next rounds exactly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from duelist.config import Config, ConfigError
from duelist.data.formats import record_prompt
from duelist.data.sources import DataError, read_records
from duelist.data.tokenize import Example, PairTokenizer, TokenizedPair, TokenizedSample
from duelist.judges import Judge, RewardJudge, get_judge
from duelist.judges.base import judge_checked
from duelist.models.reference import PrecomputedReference
from duelist.online.registry import build_method
from duelist.sample.pairing import JudgedGroup, self_play_weights
from duelist.sample.samplers import Draw, GenerateSampler, Sampler
from duelist.train.checkpoint import trainable
from duelist.train.learner import Learner
from duelist.train.loop import StepWork, mean_metrics
from duelist.train.plan import BatchPlan


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    text: str  # what the judge reads: the prompt text, or the last message's content


def load_prompts(spec: str, tokenizer: Any, max_prompt_length: int) -> list[Prompt]:
    """Every record of ``spec`` (``task:split`` or a file) with a non-empty ``prompt`` (text or messages; the shared
    prefix of an implicit-prompt pair's transcripts), tokenized as training tokenizes prompts, cut from the left
    to ``max_prompt_length`` (BOS kept)."""
    enc = PairTokenizer(tokenizer, max_length=max_prompt_length + 1, max_prompt_length=max_prompt_length)
    out = []
    for r in read_records(spec, "prompts"):
        p = record_prompt(r)
        if not (isinstance(p, str) and p.strip()) and not (isinstance(p, list) and p):
            raise DataError(f"{r.where}, field 'prompt': expected non-empty text or a list of messages, got {p!r}")
        ids = enc.encode_prompt(p)
        if len(ids) > max_prompt_length:
            head = [enc.bos] if enc.adds_bos and ids[0] == enc.bos else []
            ids = head + ids[len(ids) - (max_prompt_length - len(head)) :]
        out.append(Prompt(ids, p if isinstance(p, str) else str(p[-1]["content"])))
    if not out:
        raise DataError(f"{spec}: no prompts")
    return out


class OnlineSource:
    """Rounds of self-play. ``sampler``/``judge`` (optional) replace the ones the config names (the
    one-token game twins enumerate instead of sampling)."""

    def __init__(
        self, cfg: Config, acc: Any, tokenizer: Any, sampler: Sampler | None = None, judge: Judge | None = None
    ):
        assert cfg.online is not None
        o = self.o = cfg.online
        self.cfg, self.acc, self.tokenizer = cfg, acc, tokenizer
        if acc.num_processes > 1:
            raise ConfigError("online runs use one process for now (prompts are not yet sharded over processes)")
        if cfg.train.reference == "precompute":
            raise ConfigError(
                "train.reference=precompute computes one reference for the whole run; an online run scores its "
                "reference every round (leave train.reference at auto)"
            )
        self.method = build_method(o.method)
        self.loss = self.method.loss
        if self.loss.needs_token_kl or self.loss.aux_models:
            raise ConfigError(f"{self.method.name}: losses reading token KL or auxiliary models are offline-only")
        self.prompts = load_prompts(o.prompts, tokenizer, o.max_prompt_length)
        self.plan = BatchPlan(len(self.prompts), cfg.train.batch_size, cfg.train.seed, shuffle=cfg.data.shuffle)
        self.total_steps = self.plan.total_steps(cfg.train.steps, cfg.train.epochs)
        self.total_updates = self.total_steps * o.passes * o.updates_per_pass
        self.judge = judge if judge is not None else get_judge(o.judge)
        self.sampler: Sampler = sampler or GenerateSampler(
            o.max_new_tokens, o.temperature, tokenizer.eos_token_id, tokenizer.pad_token_id, o.prompts_per_chunk
        )
        has_reward = isinstance(self.judge, RewardJudge)
        self.reference_samples = o.reference_samples if o.reference_samples is not None else int(not has_reward)
        self.card = {"method": {"name": self.method.name, **self.method.params}, "loss": self.method.loss_config,
                     "judge": o.judge, "prompts": o.prompts, "rounds": self.total_steps}
        self.initial: nn.Module | None = None
        self.moved: nn.Module | None = None  # the reference, once moved to a copy of the policy
        self.prev_hat: dict[str, torch.Tensor] = {}  # momentum: the previous round's un-extrapolated weights

    def attach(self, learner: Learner) -> None:
        self.initial = learner.frozen_copy(base=True)  # before any update or resume: the starting weights
        if self.method.momentum:
            self.prev_hat = {n: p.detach().clone() for n, p in trainable(learner.model).items()}  # θ̂_0 = θ_0

    # ------------------------------------------------------------------------------------------- a round

    def _seed(self, step: int, stream: int) -> int:
        """Streams: 0 the policy's samples, 1 a mixture's opponents (2, 3: the same after an extragradient half
        step), 4 the reference's samples for the win-rate measurement."""
        return (self.cfg.train.seed * 1_000_003 + step) * 8 + stream

    def work(self, step: int, learner: Learner) -> StepWork:
        """One round. An extragradient method first takes its half step on samples of π_t, samples the
        half-step policy, then restores π_t's weights and optimizer state for the full step the loop takes."""
        snap = learner.snapshot() if self.method.spec.extragradient else None
        examples, metrics, firsts = self._collect(step, learner, stream=0, measure=True)
        if snap is not None:
            half = self._prepare(examples, learner)
            ups = [learner.update(half.examples, micro, half.reference, step + 1) for micro in half.updates]
            metrics.update({f"half/{k}": v for k, v in mean_metrics(ups).items() if k in ("loss", "grad_norm")})
            examples, _, _ = self._collect(step, learner, stream=2, measure=False)  # samples of π_{t+½}
            learner.restore(snap)
        t = time.perf_counter()
        work = self._prepare(examples, learner)
        metrics["kl/policy_ref"] = self._kl(learner, firsts, work)
        metrics["time/score"] = time.perf_counter() - t
        work.metrics = metrics
        return work

    def _collect(
        self, step: int, learner: Learner, stream: int, measure: bool
    ) -> tuple[list[Example], dict, list[tuple[TokenizedSample, float]]]:
        """Sample the round's prompts (K each from π_t; a mixture method also draws its opponents from ν),
        judge, and build the method's examples; with ``measure``, the round's judge reward and win-rate, and
        each prompt's first sample with its sampling log-prob (for the KL, ``_kl``)."""
        m: dict[str, float] = {}
        t = time.perf_counter()
        prompts = [self.prompts[i] for i in self.plan.global_batch(step)]
        ids = [p.ids for p in prompts]
        k, beta = self.method.k, self.method.mixture
        if beta is None:
            draws = self.sampler.draw([learner.model], [1.0], ids, k, self._seed(step, stream))
            opponents = None
        else:
            models, mix = [learner.model, self.initial], [1.0 - beta, beta]
            draws = self.sampler.draw(models, [1.0, 0.0], ids, k, self._seed(step, stream), record=mix)
            opponents = self.sampler.draw(models, mix, ids, self.method.params["opponents"],
                                          self._seed(step, stream + 1))
        m["time/generate"] = time.perf_counter() - t
        new_tokens = sum(len(s.ids) for ds in (draws, opponents or []) for d in ds for s in d.samples)
        m["gen/tokens_per_s"] = new_tokens / max(m["time/generate"], 1e-9)

        t = time.perf_counter()
        texts = [[self._decode(s.ids) for s in d.samples] for d in draws]
        opp_texts = [[self._decode(s.ids) for s in d.samples] for d in opponents] if opponents else None
        judged = [a + b for a, b in zip(texts, opp_texts, strict=True)] if opp_texts else texts
        mats, rewards = judge_checked(self.judge, [p.text for p in prompts], judged)
        groups = []
        for i, (p, d) in enumerate(zip(prompts, draws, strict=True)):
            mass = _mass(d)
            if opponents is None:
                P, w, fields = mats[i], self_play_weights(len(d.samples), d.mass), {}
            else:
                o = opponents[i]
                P = mats[i][: len(d.samples), len(d.samples) :]
                w = np.tile(_mass(o) / _mass(o).sum(), (len(d.samples), 1))
                fields = {"anchor_shift": np.array([s.recorded - s.logprob for s in d.samples])}
            r = None if rewards is None else rewards[i][: len(d.samples)]
            groups.append(JudgedGroup(p.ids, [s.ids for s in d.samples], P, w, mass, r, fields))
        built = [self.method.build([g]) for g in groups]
        examples = [e for b in built for e in b]
        m["time/judge"] = time.perf_counter() - t
        m["examples"] = float(len(examples))
        m["examples/prompts_kept"] = sum(1 for b in built if b) / len(groups)  # e.g. DNO's margin filter
        firsts = []
        if measure:
            rs = None if rewards is None else [g.rewards for g in groups]
            m.update(self._measure(step, prompts, draws, texts, rs))
            firsts = [(TokenizedSample(p.ids, d.samples[0].ids), d.samples[0].logprob)
                      for p, d in zip(prompts, draws, strict=True)]
        return examples, m, firsts

    def _prepare(self, examples: list[Example], learner: Learner) -> StepWork:
        """The round's updates, its reference and any anchor fields, scored in the training micro-batches."""
        updates = self._updates(len(examples))
        micro = [mb for u in updates[: len(updates) // self.o.passes] for mb in u]  # one pass
        reference = self._reference(learner, examples, micro)
        if "previous" in self.method.anchors and examples:
            examples = _with_previous(examples, learner.score(examples, micro))
        return StepWork(examples, updates, reference)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _updates(self, n: int) -> list[list[list[int]]]:
        """``passes`` × ``updates_per_pass`` updates: each pass cuts the n examples into consecutive equal
        shares (differing by at most one example), each share into ``train.grad_accum`` micro-batches; none
        if n = 0."""
        if n == 0:
            return []
        one_pass = []
        for share in np.array_split(np.arange(n), min(self.o.updates_per_pass, n)):
            parts = np.array_split(share, min(self.cfg.train.grad_accum, len(share)))
            one_pass.append([p.tolist() for p in parts])
        return one_pass * self.o.passes

    def _reference_model(self) -> nn.Module | None:
        """π_t (refresh every round; None: the policy as it is now), else the initial policy or its moved copy."""
        if self.method.refresh_every == 1:
            return None
        return self.moved if self.moved is not None else self.initial

    def _reference(self, learner: Learner, examples: Sequence[Example], micro: list[list[int]]) -> PrecomputedReference:
        if not examples:
            return PrecomputedReference(_empty(), learner.acc.device)
        return learner.score(examples, micro, self._reference_model())

    def _kl(self, learner: Learner, firsts: list[tuple[TokenizedSample, float]], work: StepWork) -> float:
        """KL(q‖π_ref) = E_{y~q}[log q(y) − log π_ref(y)] from the first sample of each prompt (q the sampling
        distribution: π_t at temperature 1; π_ref the initial policy). When the round's reference is π_ref
        itself, a sample that is in a training example takes its log π_ref from the round's reference scores
        (online DPO at K = 2: every one, so no extra forward pass); the others are scored."""
        known: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
        if self._reference_model() is self.initial and isinstance(work.reference, PrecomputedReference):
            sums = work.reference.data["sums"].double().cpu().tolist()
            for (i, side), r in work.reference.row.items():
                e = work.examples[i]
                response = e.response if isinstance(e, TokenizedSample) else (e.chosen, e.rejected)[side]
                known[(tuple(e.prompt), tuple(response))] = sums[r]
        keys = _keys([s for s, _ in firsts])
        missing = [s for (s, _), k in zip(firsts, keys, strict=True) if k not in known]
        if missing:
            ref = learner.score(missing, [list(range(len(missing)))], self.initial)
            known.update(zip(_keys(missing), ref.data["sums"].double().cpu().tolist(), strict=True))
        return float(np.mean([lq - known[k] for (_, lq), k in zip(firsts, keys, strict=True)]))

    def _measure(
        self,
        step: int,
        prompts: list[Prompt],
        draws: list[Draw],
        texts: list[list[str]],
        rewards: list[np.ndarray] | None,
    ) -> dict[str, float]:
        """The round's judge reward (if the judge has one) and the policy's win-rate against reference samples
        (if any are drawn)."""
        out: dict[str, float] = {}
        if rewards is not None:
            out["judge/reward"] = float(np.mean([r.mean() for r in rewards]))
        if self.reference_samples:
            ref_draws = self.sampler.draw([self.initial], [1.0], [p.ids for p in prompts], self.reference_samples,
                                          self._seed(step, 4))
            a, b, who = [], [], []
            for i, (d, rd) in enumerate(zip(texts, ref_draws, strict=True)):
                for y in d:
                    for s in rd.samples:
                        a.append(y)
                        b.append(self._decode(s.ids))
                        who.append(i)
            p = self.judge.prob([prompts[i].text for i in who], a, b)
            per_prompt = np.bincount(who, weights=p) / np.bincount(who)
            out["judge/win_rate_vs_reference"] = float(per_prompt.mean())
        return out

    # ------------------------------------------------------------------------------------------ anchors

    def finish(self, step: int, learner: Learner) -> dict[str, float]:
        """Anchors move: the reference to a copy of the policy every ``refresh_every`` rounds (if > 1); with
        momentum (APO), θ ← θ̂_t + α(θ̂_t − θ̂_{t−1}) over the rounds' un-extrapolated weights θ̂."""
        r = self.method.refresh_every
        if r > 1 and (step + 1) % r == 0:
            self.moved = learner.frozen_copy()
        alpha = self.method.momentum
        if alpha:
            params = trainable(learner.model)
            hat = {n: p.detach().clone() for n, p in params.items()}
            with torch.no_grad():
                for n, p in params.items():
                    p.add_(hat[n] - self.prev_hat[n], alpha=alpha)
            self.prev_hat = hat
        return {}

    def state(self) -> dict[str, torch.Tensor]:
        out = {}
        if self.moved is not None:
            out.update({f"reference.{k}": v for k, v in self.moved.state_dict().items()})
        if self.method.momentum:
            out.update({f"momentum.{k}": v for k, v in self.prev_hat.items()})
        return out

    def load_state(self, tensors: dict[str, torch.Tensor], learner: Learner) -> None:
        ref = {k.removeprefix("reference."): v for k, v in tensors.items() if k.startswith("reference.")}
        if ref:
            self.moved = learner.frozen_copy()
            self.moved.load_state_dict(ref)
        hat = {k.removeprefix("momentum."): v for k, v in tensors.items() if k.startswith("momentum.")}
        if hat:
            self.prev_hat = {k: v.to(learner.acc.device) for k, v in hat.items()}


def _keys(samples: Sequence[TokenizedSample]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [(tuple(s.prompt), tuple(s.response)) for s in samples]


def _mass(d: Draw) -> np.ndarray:
    return d.mass if d.mass is not None else np.ones(len(d.samples))


def _empty() -> dict[str, torch.Tensor]:
    z = torch.zeros(0, dtype=torch.long)
    return {"index": z, "side": z, "values": torch.zeros(0), "offsets": torch.zeros(1, dtype=torch.long),
            "sums": torch.zeros(0)}


def _with_previous(examples: list[Example], prev: PrecomputedReference) -> list[Example]:
    """Pairs with π_t's sequence log-probs as the fields ``prev_chosen_logps``/``prev_rejected_logps``."""
    sums = prev.data["sums"].double().cpu().tolist()
    out: list[Example] = []
    for i, e in enumerate(examples):
        assert isinstance(e, TokenizedPair), "anchor fields are for pair losses"
        extra = {**e.extra, "prev_chosen_logps": sums[prev.row[(i, 0)]], "prev_rejected_logps": sums[prev.row[(i, 1)]]}
        out.append(dataclasses.replace(e, extra=extra))
    return out
