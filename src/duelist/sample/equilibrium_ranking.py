"""Equilibrium ranking: the consensus game between a generative and a discriminative use of one LM
(Jacob, Shen, Farina, Andreas, ICLR 2024), solved with piKL no-regret dynamics, to rerank candidates.

The game, for one prompt x and a candidate set Y (|Y| = K):
  nature draws v ∈ {correct, incorrect} uniformly; the GENERATOR, told v, picks y ~ π_G(·|v); the
  DISCRIMINATOR, shown y only, guesses v̂ ~ π_D(·|y); both receive 1{v̂ = v}; each player is also
  penalised by λ·KL to its initial policy, derived from the LM:
    π_G^(1)(y|v) ∝ P_LM(y | x, v)   normalised over the K candidates,
    π_D^(1)(v|y) ∝ P_LM(v | x, y)   normalised over {correct, incorrect}.
  (These normalisations follow the reference notes, ALGORITHMS.md §8.2, marked unconfirmed there.)

Counterfactual values (derived). G's information sets are v, D's are y. The payoff of G choosing y at
v is the probability nature chose v (½) times D's probability of answering v: Q_G(y|v) = ½ π_D(v|y).
D's payoff for answering v at y is the probability of reaching y with truth v: Q_D(v|y) = ½ π_G(y|v).

piKL dynamics (regularised follow-the-leader with a vanishing entropy term). With Q̄^(t) the average
of Q^(1..t),
    π^(t+1) ∝ exp( [Q̄^(t) + λ log π^(1)] / [1/(η t) + λ] ).
Derivation: this is the maximiser of ⟨π, Q̄^(t)⟩ − λ KL(π‖π^(1)) − (1/(η t)) Σ π log π (set the
gradient of the Lagrangian to zero: Q̄ + λ log π^(1) − (λ + 1/(ηt))(log π + 1) = const). Each player
therefore runs FTRL on the λ-strongly-concave utilities u_t(π) = ⟨π, Q^(t)⟩ − λ KL(π‖π^(1)), whose
average regret
    R_T = max_π (1/T) Σ_t u_t(π) − (1/T) Σ_t u_t(π^(t)),
    max_π (1/T) Σ_t u_t(π) = max_π ⟨π, Q̄^(T)⟩ − λ KL(π‖π^(1)) = λ log Σ_y π^(1)(y) exp(Q̄^(T)(y)/λ)
is computed exactly and → 0 (O(log T / T) for strongly concave utilities).

Fixed point (derived): as t → ∞ the entropy term vanishes and, if the averages converge, the policies
satisfy the regularised best-response conditions
    π_G(y|v) ∝ π_G^(1)(y|v) exp(Q_G(y|v)/λ_G),   π_D(v|y) ∝ π_D^(1)(v|y) exp(Q_D(v|y)/λ_D),
with Q computed from the other player's (limit) policy; ``fixed_point_residual`` measures the
largest violation against the averaged values Q̄ (what the dynamics respond to; it vanishes like
1/(ηλT)) or against the last iterates. As λ → ∞ both stay at their initial policies.

Observed (toy in tests/sample): no-regret guarantees that the average regret → 0, not that the last
iterates reach a Nash equilibrium quickly. Because Q̄ is an average over all past iterates, the
policies respond to the opponent with 1/t step sizes (like fictitious play) and in this common-payoff
game can keep drifting slowly between T = 5000 and T = 50000, so the "last" residual stays ~0.08 on
the toy while the regret and the "average" residual go to 0. The regularised game is an exact
potential game (common payoff minus each player's own KL), so its equilibria are the stationary
points of u − λ_G KL_G − λ_D KL_D; the ranking reported is the piKL iterate after T iterations, as in
the method.

Rankings: ER-D ranks candidates by π_D*(correct|y), ER-G by π_G*(y|correct) (the last iterate; the
iterates converge). Defaults λ_G = λ_D = 0.1, η_G = η_D = 0.1, T = 5000 follow the reference notes
(a third-party reimplementation; not confirmed against the paper).

``lm_scores`` computes the two LM views for a prompt and candidates with one language model:
  generative: log P_LM(y | x, "write a correct answer") and log P_LM(y | x, "write an incorrect answer"),
  discriminative: log P_LM(v | x, y) as the assistant's one-token reply "Yes" (correct) / "No"
  (incorrect) to "Is the proposed answer correct?" (single-token answers, so one forward pass reads both).
The prompt's tokens are computed once and their key/value cache reused for every continuation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax

CORRECT, INCORRECT = 0, 1


def _kl(p: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """KL(p‖q) over the last axis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - logq), 0.0), axis=-1)


def _best_value(qbar: np.ndarray, log_init: np.ndarray, lam: float) -> np.ndarray:
    """max_π ⟨π, Q̄⟩ − λ KL(π‖π1) = λ log Σ π1 exp(Q̄/λ), over the last axis."""
    return lam * logsumexp(log_init + qbar / lam, axis=-1)


@dataclass
class ERResult:
    pi_g: np.ndarray  # [..., 2, K]: π_G(y | v), v = correct (0), incorrect (1)
    pi_d: np.ndarray  # [..., K, 2]: π_D(v | y)
    init_g: np.ndarray
    init_d: np.ndarray
    qbar_g: np.ndarray  # averaged counterfactual values Q̄_G [..., 2, K]
    qbar_d: np.ndarray  # [..., K, 2]
    regret_g: np.ndarray  # [checkpoints]: max over information sets (and prompts) of G's average regret
    regret_d: np.ndarray
    checkpoints: np.ndarray  # iterations at which regret was recorded
    lam_g: float
    lam_d: float

    def scores(self, method: str) -> np.ndarray:
        """[..., K] the score each method ranks by: ``er-d``, ``er-g``, ``generator`` (π_G^(1)(y|correct)),
        ``discriminator`` (π_D^(1)(correct|y))."""
        return {
            "er-d": self.pi_d[..., CORRECT],
            "er-g": self.pi_g[..., CORRECT, :],
            "generator": self.init_g[..., CORRECT, :],
            "discriminator": self.init_d[..., CORRECT],
        }[method]

    def ranking(self, method: str = "er-d") -> np.ndarray:
        """Candidate indices, best first (stable on ties)."""
        return np.argsort(-self.scores(method), axis=-1, kind="stable")

    def fixed_point_residual(self, against: str = "average") -> float:
        """Largest violation of π = π^(1) exp(Q/λ)/Z over both players. ``against="average"``: Q = Q̄, the
        averaged counterfactual values the dynamics respond to (→ 0 like 1/(ηλT): only the vanishing
        entropy term separates the iterate from this fixed point). ``"last"``: Q from the other player's
        last iterate, i.e. how far the last iterates are from a Nash equilibrium of the regularised game;
        this need not be small at finite T (see the module note on slow drift)."""
        if against == "average":
            qg, qd = self.qbar_g, self.qbar_d
        elif against == "last":
            qg, qd = 0.5 * np.swapaxes(self.pi_d, -1, -2), 0.5 * np.swapaxes(self.pi_g, -1, -2)
        else:
            raise ValueError("against must be 'average' or 'last'")
        bg = softmax(np.log(self.init_g) + qg / self.lam_g, axis=-1)
        bd = softmax(np.log(self.init_d) + qd / self.lam_d, axis=-1)
        return float(max(np.abs(bg - self.pi_g).max(), np.abs(bd - self.pi_d).max()))


def initial_policies(log_g: np.ndarray, log_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """π_G^(1) = softmax over candidates of log P_LM(y|x,v) ([..., 2, K]); π_D^(1) = softmax over v of
    log P_LM(v|x,y) ([..., K, 2])."""
    return softmax(np.asarray(log_g, float), axis=-1), softmax(np.asarray(log_d, float), axis=-1)


def equilibrium_ranking(
    log_g: np.ndarray,
    log_d: np.ndarray,
    lam_g: float = 0.1,
    lam_d: float = 0.1,
    eta_g: float = 0.1,
    eta_d: float = 0.1,
    iterations: int = 5000,
    record: int = 50,
) -> ERResult:
    """Run piKL on the consensus game. ``log_g`` [..., 2, K]: log P_LM(y | x, v) (any per-row constant
    is irrelevant); ``log_d`` [..., K, 2]: log P_LM(v | x, y). Leading axes batch independent prompts."""
    g1, d1 = initial_policies(log_g, log_d)
    lg1 = np.log(np.clip(g1, 1e-300, None))
    ld1 = np.log(np.clip(d1, 1e-300, None))
    g, d = g1.copy(), d1.copy()
    sum_qg, sum_qd = np.zeros_like(g), np.zeros_like(d)
    realised_g = np.zeros(g.shape[:-1])
    realised_d = np.zeros(d.shape[:-1])
    marks = set(np.unique(np.geomspace(1, iterations, record).astype(int)).tolist())
    cps, rg, rd = [], [], []
    for t in range(1, iterations + 1):
        qg = 0.5 * np.swapaxes(d, -1, -2)  # Q_G(y|v) = ½ π_D(v|y)
        qd = 0.5 * np.swapaxes(g, -1, -2)  # Q_D(v|y) = ½ π_G(y|v)
        sum_qg += qg
        sum_qd += qd
        realised_g += np.sum(g * qg, axis=-1) - lam_g * _kl(g, lg1)
        realised_d += np.sum(d * qd, axis=-1) - lam_d * _kl(d, ld1)
        if t in marks:
            cps.append(t)
            rg.append(float((_best_value(sum_qg / t, lg1, lam_g) - realised_g / t).max()))
            rd.append(float((_best_value(sum_qd / t, ld1, lam_d) - realised_d / t).max()))
        g = softmax((sum_qg / t + lam_g * lg1) / (1 / (eta_g * t) + lam_g), axis=-1)
        d = softmax((sum_qd / t + lam_d * ld1) / (1 / (eta_d * t) + lam_d), axis=-1)
    return ERResult(
        pi_g=g,
        pi_d=d,
        init_g=g1,
        init_d=d1,
        qbar_g=sum_qg / iterations,
        qbar_d=sum_qd / iterations,
        regret_g=np.array(rg),
        regret_d=np.array(rd),
        checkpoints=np.array(cps),
        lam_g=lam_g,
        lam_d=lam_d,
    )


# ---------------------------------------------------------------- scoring candidates with one LM

GEN_SUFFIX = {
    CORRECT: "\n\nWrite a correct answer to the question.",
    INCORRECT: "\n\nWrite an incorrect answer to the question.",
}
DISC_SUFFIX = "\n\nProposed answer: {answer}\n\nIs the proposed answer correct? Answer Yes or No."
DISC_WORDS = {CORRECT: "Yes", INCORRECT: "No"}


def _chat_pieces(tokenizer: Any, user_prefix: str) -> tuple[str, str]:
    """Split the chat rendering of a user turn into the text before and after its content, so that a
    content prefix can be cached and different content endings appended."""
    marker = "\x00MARK\x00"
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_prefix + marker}], tokenize=False, add_generation_prompt=True
    )
    head, tail = full.split(marker)
    return head, tail


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def lm_scores(model: Any, tokenizer: Any, user_prefix: str, candidates: Sequence[str]) -> dict[str, Any]:
    """The generative and discriminative LM scores of ``candidates`` for a chat prompt whose user turn
    starts with ``user_prefix`` (e.g. passages and question).

    Returns ``log_g`` [2][K]: log P_LM(y | x, v), the summed token log-probs of candidate y (plus EOS) as
    the assistant's reply when the user turn ends with "Write a correct / an incorrect answer";
    ``log_d`` [K][2]: log P_LM(v | x, y), the log-prob of the one-token reply "Yes" / "No" to "Proposed
    answer: y. Is the proposed answer correct?"; ``tokens`` [K]: candidate lengths.

    The user prefix is run once; its key/value cache is repeated for one right-padded batch of all
    2K + K continuations (every row starts right after the prefix, so positions agree)."""
    import torch

    head, tail = _chat_pieces(tokenizer, user_prefix)
    prefix = _ids(tokenizer, head)
    eos = tokenizer.eos_token_id
    words = {v: _ids(tokenizer, w) for v, w in DISC_WORDS.items()}
    single = all(len(w) == 1 for w in words.values())  # then one row per candidate reads both words
    # each row: (token ids after the prefix, index where the scored tokens start, next-token ids to read)
    rows: list[tuple[list[int], int, tuple[int, ...]]] = []
    y_ids = [_ids(tokenizer, y) + ([eos] if eos is not None else []) for y in candidates]
    for v in (CORRECT, INCORRECT):
        cond = _ids(tokenizer, GEN_SUFFIX[v] + tail)
        rows += [(cond + y, len(cond), ()) for y in y_ids]
    for y in candidates:
        q = _ids(tokenizer, DISC_SUFFIX.format(answer=y) + tail)
        if single:
            rows.append((q, len(q), (words[CORRECT][0], words[INCORRECT][0])))
        else:
            rows += [(q + words[v], len(q), ()) for v in (CORRECT, INCORRECT)]
    width = max(len(r[0]) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    att = torch.zeros((len(rows), len(prefix) + width), dtype=torch.long)
    att[:, : len(prefix)] = 1
    for r, (row, _, _) in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        att[r, len(prefix) : len(prefix) + len(row)] = 1
    was_training = model.training
    model.eval()
    scores: list[Any] = []
    with torch.no_grad():
        first = model(input_ids=torch.tensor([prefix]), use_cache=True)
        cache = first.cache
        cache.batch_repeat_interleave(len(rows))
        out = model(input_ids=ids, attention_mask=att, cache=cache, use_cache=True)
        last = first.logits[0, -1].float().log_softmax(-1)
        for r, (row, start, read) in enumerate(rows):
            lp = out.logits[r, : len(row)].float().log_softmax(-1)
            dists = torch.cat([last[None], lp[:-1]])  # the distribution each row token was drawn from
            tok = torch.tensor(row)
            scored = float(dists[torch.arange(start, len(row)), tok[start:]].sum())
            scores.append(tuple(float(lp[len(row) - 1, t]) for t in read) if read else scored)
    model.train(was_training)
    k = len(candidates)
    log_g = [[scores[v * k + i] for i in range(k)] for v in (CORRECT, INCORRECT)]
    if single:
        log_d = [list(scores[2 * k + i]) for i in range(k)]
    else:
        log_d = [[scores[2 * k + 2 * i], scores[2 * k + 2 * i + 1]] for i in range(k)]
    return {"log_g": log_g, "log_d": log_d, "tokens": [len(y) for y in y_ids]}


def build_lm_scores(
    questions_file: Path,
    out: Path,
    limit: int = 100,
    max_passage_words: int = 60,
    model_name: str = "default",
    threads: int | None = 1,
) -> None:
    """Score the first ``limit`` questions of ``questions_file`` with the default model; appends one JSON
    line per question to ``out`` and resumes where a previous run stopped. Passages are cut to their first
    ``max_passage_words`` words (CPU budget). ``threads``: torch threads (1 avoids thread oversubscription
    on a shared CPU)."""
    import gzip

    import torch
    from rich.progress import Progress

    from duelist.config import ModelConfig
    from duelist.data.tasks.judged_builders import QA_INSTRUCTION, qa_prompt
    from duelist.models.load import load_model

    with gzip.open(questions_file, "rt", encoding="utf-8") as f:
        questions = [json.loads(line) for line in f][:limit]
    done = set()
    if out.is_file():
        done = {json.loads(line)["question_id"] for line in out.read_text().splitlines() if line.strip()}
    if threads:
        torch.set_num_threads(threads)
    model, tok = load_model(ModelConfig(name=model_name, dtype="float32"))
    with Progress(transient=True) as bar, out.open("a", encoding="utf-8") as f:
        task = bar.add_task("scoring candidates", total=len(questions), completed=len(done))
        for q in questions:
            if q["question_id"] in done:
                continue
            prefix = qa_prompt(q["question"], q["passages"], max_passage_words).replace(QA_INSTRUCTION + "\n\n", "")
            s = lm_scores(model, tok, prefix, q["answers"])
            row = {"question_id": q["question_id"], "preference": q["preference"], **s}
            f.write(json.dumps(row) + "\n")
            f.flush()
            bar.advance(task)


# ---------------------------------------------------------------- agreement with human labels


def human_record(preference: Sequence[int], k: int = 4) -> np.ndarray:
    """[K, K] matrix W with W[i, j] = 1 when humans preferred answer i over answer j (non-tie labels)."""
    from duelist.data.tasks.judged_builders import qa_pairs

    w = np.zeros((k, k))
    for i, j in qa_pairs({"preference": list(preference)}):
        w[i, j] = 1
    return w


def agreement(top: Sequence[int], preferences: Sequence[Sequence[int]]) -> dict[str, float]:
    """How well the chosen top answers agree with human pairwise labels.

    * ``pairwise``: over every human non-tie pair that involves a question's top answer, the fraction
      the top answer wins (micro-average over questions). Choosing the top answer at random gives
      exactly ½ in expectation, since every pair is one win and one loss.
    * ``pairwise_se``: standard error of that fraction from the per-question (wins − losses) totals
      (ratio estimator, questions as units).
    * ``best``: the fraction of questions whose top answer has the highest human net wins (a tie for the
      highest counts).
    """
    wins, losses, best = [], [], []
    for t, pref in zip(top, preferences, strict=True):
        w = human_record(pref)
        wins.append(w[t].sum())
        losses.append(w[:, t].sum())
        net = w.sum(1) - w.sum(0)
        best.append(float(net[t] == net.max()))
    wins_a, losses_a = np.array(wins), np.array(losses)
    n = wins_a + losses_a
    frac = wins_a.sum() / max(n.sum(), 1)
    q = len(wins_a)
    resid = wins_a - frac * n
    se = float(np.sqrt(q / max(q - 1, 1) * (resid**2).sum()) / max(n.sum(), 1))
    return {
        "pairwise": float(frac),
        "pairwise_se": se,
        "pairs": int(n.sum()),
        "best": float(np.mean(best)),
        "questions": q,
    }


def load_lm_scores(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rerank_experiment(
    rows: Sequence[dict[str, Any]], length_normalize: bool = False, **er_params: Any
) -> dict[str, Any]:
    """Equilibrium ranking on cached LM scores; agreement of each method's top answer with humans.
    ``length_normalize``: use the mean per-token log-prob log P(y|x,v)/|y| as the generator's score (a
    variant; the default is the sequence log-prob, as in the method)."""
    log_g = np.array([r["log_g"] for r in rows], dtype=np.float64)
    if length_normalize:
        log_g = log_g / np.array([r["tokens"] for r in rows], dtype=np.float64)[:, None, :]
    log_d = np.array([r["log_d"] for r in rows], dtype=np.float64)
    res = equilibrium_ranking(log_g, log_d, **er_params)
    prefs = [r["preference"] for r in rows]
    out: dict[str, Any] = {"questions": len(rows), "final_regret_g": float(res.regret_g[-1])}
    out["final_regret_d"] = float(res.regret_d[-1])
    out["fixed_point_residual"] = res.fixed_point_residual()
    for m in ("generator", "discriminator", "er-g", "er-d"):
        out[m] = agreement(res.ranking(m)[:, 0].tolist(), prefs)
    return out
