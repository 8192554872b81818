"""A saved reward or preference model: its folder, saving, loading, and batched scoring of texts.

The folder (written atomically by ``save_reward_model``)::

    duelist.json         the card (``ModelCard``): kind and parameters, base model, training data, sizes,
                         users, backbone folders, normalisation statistics, prompt format, tokenization
    config.json, model.safetensors, tokenizer files
                         the backbone (an HF base model, ``AutoModel.from_pretrained(folder)``) and its tokenizer
    backbone-1/          a further backbone for kinds trained with several (CRM's second model), same layout
    head.safetensors     the head's state: weights, normalisation buffers, user weights or cluster assignments

``load_reward_model(folder)`` rebuilds the kind from the registry, the head from the kind, and checks every
tensor of ``head.safetensors`` against it. ``RewardModel`` re-tokenizes (prompt, response) texts with its own
tokenizer exactly as training does (``PairTokenizer``: chat template for ``prompt_format: chat``, one EOS, long
prompts cut from the left), reads the head at the response's last token (and the prompt's last token, in the
same forward pass), and gives rewards, P(a ≻ b), or a K×K preference matrix from K forward passes per prompt.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from duelist.data.formats import Messages, PreferenceExample
from duelist.data.tokenize import PairTokenizer
from duelist.models.heads import HeadOutput, last_token_states
from duelist.models.logprobs import split_lm
from duelist.rewards.registry import Kind, build_kind

CARD = "duelist.json"
HEAD = "head.safetensors"
FORMAT = "duelist-reward-model"
Prompt = str | Messages


class ModelCard(BaseModel):
    """``duelist.json`` of a reward-model folder."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["duelist-reward-model"] = FORMAT
    version: Literal[1] = 1
    kind: dict[str, Any]
    """``{name: <registered kind>, <its parameters>}``."""
    base_model: str
    training_data: dict[str, Any] = {}
    hidden_size: int
    num_users: int = 0
    users: list[int | str] = []
    """Original user ids in the order of the head's user rows."""
    backbones: list[str] = ["."]
    normalisation: dict[str, list[float]] | None = None
    """Per reward column, mean and std of the raw rewards over the training responses."""
    prompt_format: Literal["chat", "text"] = "chat"
    """``chat``: text prompts and responses become a user and an assistant turn under the chat template."""
    max_length: int = 512
    max_prompt_length: int = 256
    metrics: dict[str, Any] = {}


def _base(model: nn.Module) -> nn.Module:
    """The HF base model to save: LoRA merged, the LM head dropped (a reward model reads hidden states only)."""
    if callable(getattr(model, "merge_and_unload", None)):
        model = model.merge_and_unload()
    try:
        return split_lm(model)[0]
    except TypeError:
        return model


def save_reward_model(
    path: str | Path,
    *,
    kind: Kind,
    head: nn.Module,
    backbones: Sequence[nn.Module],
    tokenizer: Any,
    base_model: str,
    training_data: dict[str, Any] | None = None,
    users: Sequence[int | str] = (),
    prompt_format: str = "chat",
    max_length: int = 512,
    max_prompt_length: int = 256,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write a reward-model folder at ``path`` atomically (a temporary folder renamed into place; an existing
    folder is replaced only once the new one is complete). ``backbones``: the kind's backbones (causal LMs, base
    models, or PEFT models, which are merged in place). Normalisation statistics are read from the head."""
    path = Path(path)
    if len(backbones) != kind.backbones:
        raise ValueError(f"model kind {kind.name!r} has {kind.backbones} backbone(s), got {len(backbones)}")
    bases = [_base(b) for b in backbones]
    norm = None
    if kind.has_reward:
        norm = {"mean": head.norm_mean.tolist(), "std": head.norm_std.tolist()}
    names = ["."] + [f"backbone-{i}" for i in range(1, len(bases))]
    card = ModelCard(
        kind={"name": kind.name, **kind.params},
        base_model=base_model,
        training_data=dict(training_data or {}),
        hidden_size=int(bases[0].config.hidden_size),
        num_users=len(users),
        users=list(users),
        backbones=names,
        normalisation=norm,
        prompt_format=prompt_format,
        max_length=max_length,
        max_prompt_length=max_prompt_length,
        metrics=dict(metrics or {}),
    )
    state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
    _check_head(kind, state, card, "the head to save")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    try:
        for name, base in zip(names, bases, strict=True):
            base.save_pretrained(tmp / name, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_file(state, tmp / HEAD)
        (tmp / CARD).write_text(card.model_dump_json(indent=1))
        if path.exists():
            old = path.with_name(f".old-{path.name}")
            shutil.rmtree(old, ignore_errors=True)  # left by an interrupted replacement
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _check_head(kind: Kind, state: dict[str, Tensor], card: ModelCard, where: str) -> nn.Module:
    """A fresh head of ``kind`` for the card's sizes, loaded with ``state``; an error naming ``where`` if any tensor
    is missing, extra or of another shape."""
    head = kind.make_head(card.hidden_size, card.num_users)
    expected = head.state_dict()
    bad = sorted(set(state) ^ set(expected)) or [k for k in state if state[k].shape != expected[k].shape]
    if bad:
        raise ValueError(
            f"{where}: does not match a {kind.name!r} head for {card.hidden_size} hidden units and "
            f"{card.num_users} users (tensor {bad[0]!r})"
        )
    head.load_state_dict(state)
    return head


def read_card(path: str | Path) -> ModelCard:
    """The card of a reward-model folder; a clear one-line error for anything else."""
    path = Path(path)
    card_file = path / CARD
    if not card_file.is_file():
        raise FileNotFoundError(f"{path}: not a duelist reward-model folder (no {CARD})")
    try:
        data = json.loads(card_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{card_file}: not valid JSON ({e.msg})") from None
    if data.get("format") != FORMAT:
        raise ValueError(f"{card_file}: not a reward-model card (format {data.get('format')!r}; a policy's folder?)")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"{card_file}, field {'.'.join(map(str, err['loc']))!r}: {err['msg']}") from None


@dataclass
class RewardModel:
    """A loaded reward or preference model that scores texts (see the module docstring)."""

    card: ModelCard
    kind: Kind
    head: nn.Module
    backbones: list[nn.Module]
    tokenizer: Any
    batch_size: int = 16
    name: str = "rm"
    _user_index: dict[int | str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._user_index = {u: i for i, u in enumerate(self.card.users)}
        self._enc = PairTokenizer(self.tokenizer, self.card.max_length, self.card.max_prompt_length, "keep_end")
        for m in (*self.backbones, self.head):
            m.eval()

    @property
    def device(self) -> torch.device:
        return next(self.backbones[0].parameters()).device

    def encode(self, prompt: Prompt, response: str | Messages) -> tuple[list[int], list[int]]:
        """Token ids (prompt, response) as training tokenizes them."""
        if self.card.prompt_format == "chat":
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
            if isinstance(response, str):
                response = [{"role": "assistant", "content": response}]
        pair = self._enc(PreferenceExample(prompt, response, response))
        assert pair is not None  # keep_end never drops
        return pair.prompt, pair.chosen

    def _user_rows(self, users: Sequence[int | str] | None, n: int) -> Tensor | None:
        if not self.kind.reads_user or (users is None and not self.kind.user_scores):
            return None
        if users is None:
            raise ValueError(f"model kind {self.kind.name!r} scores per user: pass users (ids: {self.card.users[:5]}…)")
        if len(users) != n:
            raise ValueError(f"{len(users)} users for {n} responses")
        unknown = [u for u in users if u not in self._user_index]
        if unknown:
            raise KeyError(f"user {unknown[0]!r} is not in the model (fit a new user's weights first)")
        return torch.tensor([self._user_index[u] for u in users], dtype=torch.long, device=self.device)

    @torch.no_grad()
    def hidden_states(
        self, prompts: Sequence[Prompt], responses: Sequence[str | Messages]
    ) -> tuple[Tensor, Tensor]:
        """The head's inputs for each (prompt, response), rows in input order: the hidden state at the response's
        last token ([N, H], or [N, M, H] for M backbones) and at the prompt's last token ([N, H]). One forward pass
        per response and backbone, batched by length."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        enc = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        seqs = [p + r for p, r in enc]
        positions = [[len(s) - 1, len(p) - 1] for s, (p, _) in zip(seqs, enc, strict=True)]
        order = np.argsort([len(s) for s in seqs], kind="stable")
        pad = self.tokenizer.pad_token_id
        hidden, prompt = [], []
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            done: dict[int, Tensor] = {}  # a backbone loaded once for several identical folders runs once
            for b in self.backbones:
                if id(b) not in done:
                    done[id(b)] = last_token_states(b, [seqs[i] for i in idx], [positions[i] for i in idx], pad)
            states = [done[id(b)] for b in self.backbones]
            hidden.append(states[0][:, 0] if len(states) == 1 else torch.stack([s[:, 0] for s in states], dim=1))
            prompt.append(states[0][:, 1])
        inverse = torch.as_tensor(np.argsort(order), device=self.device)
        return torch.cat(hidden)[inverse], torch.cat(prompt)[inverse]

    @torch.no_grad()
    def outputs(
        self, prompts: Sequence[Prompt], responses: Sequence[str | Messages], users: Sequence[int | str] | None = None
    ) -> HeadOutput:
        """Head outputs of each (prompt, response), rows in input order."""
        user_rows = self._user_rows(users, len(responses))
        hidden, prompt = self.hidden_states(prompts, responses)
        out: list[HeadOutput] = []
        for s in range(0, hidden.shape[0], self.batch_size):  # the head in batches too: it may be an MLP
            rows = None if user_rows is None else user_rows[s : s + self.batch_size]
            out.append(self.head(hidden[s : s + self.batch_size], prompt[s : s + self.batch_size], rows))
        return {k: torch.cat([o[k] for o in out]) for k in out[0]}

    def fit_users(
        self,
        prompts: Sequence[Prompt],
        chosen: Sequence[str | Messages],
        rejected: Sequence[str | Messages],
        users: Sequence[int | str],
    ) -> list[int | str]:
        """Fit the users of these pairs that the model has not seen (``Kind.fit_new_users``: PAL their mixture
        weights, MaxMin their group) from their pairs alone; returns their ids, now usable in ``users``."""
        new = sorted({u for u in users if u not in self._user_index}, key=str)
        if not new:
            return []
        rows = {u: len(self.card.users) + i for i, u in enumerate(new)}
        keep = [i for i, u in enumerate(users) if u in rows]
        hw, hx = self.hidden_states([prompts[i] for i in keep], [chosen[i] for i in keep])
        hl, _ = self.hidden_states([prompts[i] for i in keep], [rejected[i] for i in keep])
        user_rows = torch.tensor([rows[users[i]] for i in keep], dtype=torch.long, device=self.device)
        with torch.enable_grad():
            self.kind.fit_new_users(self.head, hw, hl, hx, user_rows, len(new))
        self.card.users = [*self.card.users, *new]
        self.card.num_users = len(self.card.users)
        self._user_index = {u: i for i, u in enumerate(self.card.users)}
        return new

    def rewards(
        self, prompts: Sequence[Prompt], responses: Sequence[str | Messages], users: Sequence[int | str] | None = None
    ) -> np.ndarray:
        """The kind's reward of each response (standardised with the training statistics), float64 [n]."""
        return self.kind.reward(self.outputs(prompts, responses, users)).double().cpu().numpy()

    def prob(
        self,
        prompts: Sequence[Prompt],
        a: Sequence[str | Messages],
        b: Sequence[str | Messages],
        users: Sequence[int | str] | None = None,
    ) -> np.ndarray:
        """P(a_i ≻ b_i | prompt_i), float64 [n]."""
        n = len(a)
        out = self.outputs([*prompts, *prompts], [*a, *b], None if users is None else [*users, *users])
        first = {k: v[:n] for k, v in out.items()}
        second = {k: v[n:] for k, v in out.items()}
        return self.kind.prob(first, second).double().cpu().numpy()

    def matrix(self, prompt: Prompt, responses: Sequence[str | Messages], user: int | str | None = None) -> np.ndarray:
        """[K, K] P(y_i ≻ y_j | prompt) from K forward passes (each response embedded once), diagonal ½."""
        return self.matrices([prompt], [responses], None if user is None else [user])[0]

    def matrices(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[Sequence[str | Messages]],
        users: Sequence[int | str] | None = None,
    ) -> list[np.ndarray]:
        """One [K_i, K_i] preference matrix per prompt; every response is scored once, in one batched call."""
        flat_p = [p for p, rs in zip(prompts, responses, strict=True) for _ in rs]
        flat_u = None if users is None else [u for u, rs in zip(users, responses, strict=True) for _ in rs]
        out = self.outputs(flat_p, [r for rs in responses for r in rs], flat_u)
        mats, start = [], 0
        for rs in responses:
            k = len(rs)
            ii, jj = np.triu_indices(k, 1)
            rows = {key: v[start : start + k] for key, v in out.items()}
            m = np.full((k, k), 0.5)
            if len(ii):
                p = self.kind.prob({key: v[ii] for key, v in rows.items()}, {key: v[jj] for key, v in rows.items()})
                m[ii, jj] = p.double().cpu().numpy()
                m[jj, ii] = 1 - m[ii, jj]
            mats.append(m)
            start += k
        return mats

    def score(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[Sequence[str | Messages]],
        users: Sequence[int | str] | None = None,
    ) -> list[np.ndarray]:
        """Per prompt: its responses' rewards [K] (kinds with a reward) or their K×K preference matrix."""
        if not self.kind.has_reward:
            return self.matrices(prompts, responses, users)
        flat_u = None if users is None else [u for u, rs in zip(users, responses, strict=True) for _ in rs]
        flat = self.rewards(
            [p for p, rs in zip(prompts, responses, strict=True) for _ in rs],
            [r for rs in responses for r in rs],
            flat_u,
        )
        return np.split(flat, np.cumsum([len(rs) for rs in responses])[:-1])


def _weights_digest(folder: Path) -> str:
    """SHA-256 of a backbone folder's weight files (the folder's own path if it has none)."""
    import hashlib

    files = sorted(folder.glob("model*.safetensors"))
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest() if files else str(folder)


def load_reward_model(
    path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None, batch_size: int = 16
) -> RewardModel:
    """Load a folder written by ``save_reward_model``."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    card = read_card(path)
    kind = build_kind(card.kind, prefix=f"{path / CARD}: kind")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    loaded: dict[str, nn.Module] = {}  # by the weights' hash: identical backbone folders (a frozen CRM) load once
    backbones = []
    for b in card.backbones:
        digest = _weights_digest(path / b)
        if digest not in loaded:
            loaded[digest] = AutoModel.from_pretrained(path / b, dtype=dtype).to(dev)
        backbones.append(loaded[digest])
    head = _check_head(kind, load_file(path / HEAD), card, str(path / HEAD))
    head.to(device=dev, dtype=dtype or next(backbones[0].parameters()).dtype)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return RewardModel(card, kind, head, backbones, tok, batch_size, name=f"rm:{path}")
