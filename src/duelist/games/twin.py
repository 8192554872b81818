"""A game as a one-token language model: run an online method's language-model code path on a preference
matrix and compare its iterates with its tabular twin in ``games.dynamics``.

The "language model" is a table of logits over the game's n responses (``LogitTable``): whatever the
prompt, its one response token y has probability softmax(x)_y. A round of the online loop then runs as in a
real run — the same ``OnlineSource`` round, judge check, pairing, method, reference and anchor scoring,
learner update and loss — with two stand-ins that make it exact: the sampler enumerates all n responses with
their probabilities (``ExhaustiveSampler``, so pairings form population losses), and the judge answers
from the matrix (``MatrixJudge``). Each round's loss is minimised to convergence by full-batch gradient
descent (``passes`` updates), so the round's result is the exact minimiser the twin's closed form gives.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from duelist.games.matrices import Game
from duelist.judges.base import Judge
from duelist.sample.engine import Sample
from duelist.sample.samplers import Draw


class _Ones(nn.Module):
    """A backbone whose every hidden state is the 1-vector of size 1: the head's weight column is the table."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, input_ids: torch.Tensor, **_: Any) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=torch.ones(*input_ids.shape, 1, dtype=self.dtype))


class LogitTable(nn.Module):
    """A one-token causal LM over n tokens with logits ``x`` (trainable), in float64."""

    base_model_prefix = "model"

    def __init__(self, logits: np.ndarray):
        super().__init__()
        self.model = _Ones(torch.float64)
        self.lm_head = nn.Linear(1, len(logits), bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.lm_head.weight[:, 0] = torch.as_tensor(logits, dtype=torch.float64)
        self.config = SimpleNamespace(_attn_implementation="eager", use_cache=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.lm_head.weight[:, 0].detach(), 0)

    def policy(self) -> np.ndarray:
        return self.log_probs().exp().numpy()


class OneTokenTokenizer:
    """Token y ↔ text ``y<y>``; every prompt is the single token 0 (the table ignores it)."""

    bos_token_id = None
    eos_token_id = None
    pad_token_id = 0
    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [0]}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(f"y{i}" for i in ids)


@dataclass
class ExhaustiveSampler:
    """Every response of the one-token models, with its exact probability under their geometric mixture."""

    def draw(
        self,
        models: Sequence[nn.Module],
        weights: Sequence[float],
        prompts: Sequence[list[int]],
        k: int,
        seed: int,
        record: Sequence[float] | None = None,
    ) -> list[Draw]:
        def mix(ws: Sequence[float]) -> torch.Tensor:
            return torch.log_softmax(sum(w * m.log_probs() for w, m in zip(ws, models, strict=True)), 0)

        logq = mix(weights)
        logr = mix(record) if record is not None else None
        mass = logq.exp().numpy()
        return [Draw([Sample(p, [y], float(logq[y]), False, None if logr is None else float(logr[y]))
                      for y in range(len(mass))], mass) for p in range(len(prompts))]


class MatrixJudge(Judge):
    """P(a ≻ b) read from a preference matrix over the responses ``y0 … y<n−1>``."""

    def __init__(self, P: np.ndarray, name: str = "matrix"):
        self.P = np.asarray(P, dtype=np.float64)
        self.name = name

    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        i = [int(t[1:]) for t in a]
        j = [int(t[1:]) for t in b]
        return self.P[i, j]


def lm_iterates(
    method: Mapping[str, Any], game: Game, rounds: int, passes: int = 400, lr: float = 1.0
) -> np.ndarray:
    """π_0 … π_rounds of the online method ``method`` (``{name: ..., <params>}``) run through the language-model
    code path on ``game`` with exact win-rates, each round's loss minimised by ``passes`` full-batch gradient
    steps (plain SGD at ``lr``). π_0 = μ, the reference."""
    from duelist.config import load_config
    from duelist.train.run import Run

    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.jsonl"
        prompts.write_text('{"prompt": "x"}\n')
        overrides = [
            f"online.method={dict(method)}", f"online.prompts={prompts}", f"online.passes={passes}",
            "online.reference_samples=0", f"train.output_dir={tmp}/run", f"train.steps={rounds}",
            "train.batch_size=1", "train.layout=padded", "train.progress=false", "train.tensorboard=false",
            "train.save_final=false", "optim.name=sgd", f"optim.lr={lr}", "optim.warmup=0",
            "optim.schedule=constant", "optim.max_grad_norm=null",
        ]
        cfg = load_config(None, overrides)
        model = LogitTable(np.log(game.mu))
        run = Run(cfg, model=model, tokenizer=OneTokenTokenizer(), sampler=ExhaustiveSampler(),
                  judge=MatrixJudge(game.P))
        out = [model.policy()]
        for step in range(rounds):
            run.step(step)
            out.append(model.policy())
    return np.array(out)


def game_iterates(algorithm: str, game: Game, rounds: int, eta: float, **options: float) -> np.ndarray:
    """π_0 … π_rounds of the tabular algorithm in exact mode (π_0 = μ); ``options`` as its ``configure`` takes."""
    from duelist.games.dynamics import ExactOracle, get_algorithm
    from duelist.games.solvers import softmax

    algo = get_algorithm(algorithm)(game, eta=eta, steps=rounds, **options)
    oracle = ExactOracle(game)
    out = [softmax(algo.x)]
    for _ in range(rounds):
        algo.step(oracle)
        out.append(algo.policy)
    return np.array(out)
