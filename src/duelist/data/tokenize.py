"""Stage 3: preference examples → token ids (prompt, chosen response, rejected response).

Special tokens, exactly once each:
* BOS: added in front of the prompt only if this tokenizer adds one by convention (``tokenizer("a")``
  starts with it) and the text does not already start with it (chat templates often write it).
* EOS: every response ends with one EOS and never gets a second: anything a chat template writes after
  its final end-of-turn token (e.g. a trailing newline) is dropped, and an EOS is appended only when
  the response has none.

Truncation (``max_length`` = prompt + longest response, ``max_prompt_length``):
* ``keep_end``: the prompt is cut from the left to ``max_prompt_length`` (its BOS is kept), then the
  responses are cut from the right to fit ``max_length`` (a cut response loses its EOS);
* ``drop``: a pair that does not fit is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from duelist.data.formats import PreferenceExample
from duelist.data.sources import DataError


@dataclass(frozen=True)
class TokenizedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    truncated: bool = False
    extra: dict[str, float] = field(default_factory=dict, compare=False)  # numeric per-pair fields

    @property
    def length(self) -> int:
        return len(self.prompt) + max(len(self.chosen), len(self.rejected))


@dataclass(frozen=True)
class TokenizedSample:
    """One response to a prompt, for pointwise losses (e.g. a policy-gradient step on judged samples)."""

    prompt: list[int]
    response: list[int]
    extra: dict[str, float] = field(default_factory=dict, compare=False)  # numeric per-sample fields

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.response)


def render(tokenizer: Any, example: PreferenceExample) -> tuple[str, str, str]:
    """Texts of prompt, chosen and rejected responses; conversations go through the chat template."""
    if not example.conversational:
        return example.prompt, example.chosen, example.rejected  # type: ignore[return-value]
    if getattr(tokenizer, "chat_template", None) is None:
        raise DataError(
            f"{example.source}, record {example.number}: conversational data needs a tokenizer with a chat template"
        )
    prompt = _template(tokenizer, example, "prompt", example.prompt, add_generation_prompt=True)
    out = [prompt]
    for name, resp in (("chosen", example.chosen), ("rejected", example.rejected)):
        full = _template(tokenizer, example, name, list(example.prompt) + list(resp))
        if not full.startswith(prompt):
            raise DataError(
                f"{example.source}, record {example.number}: the chat template does not render the prompt "
                "as a prefix of the full conversation, so prompt tokens cannot be masked"
            )
        out.append(full[len(prompt) :])
    return out[0], out[1], out[2]


Example = TokenizedPair | TokenizedSample  # what a learner trains on: a pair, or one response (pointwise losses)


def _template(tokenizer: Any, example: PreferenceExample, field: str, messages: Any, **kw: Any) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kw)
    except TemplateError as e:  # templates raise on conversations they refuse (e.g. roles out of order)
        raise DataError(
            f"{example.source}, record {example.number}, field {field!r}: the chat template refuses it ({e})"
        ) from None


class PairTokenizer:
    def __init__(
        self,
        tokenizer: Any,
        max_length: int = 512,
        max_prompt_length: int = 256,
        truncation: str = "keep_end",
    ):
        self.tok = tokenizer
        self.max_length = max_length
        self.max_prompt_length = min(max_prompt_length, max_length - 1)
        self.truncation = truncation
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        self.adds_bos = self.bos is not None and len(probe) > 0 and probe[0] == self.bos

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def encode_prompt(self, prompt: str | list[dict[str, str]]) -> list[int]:
        """Token ids of a prompt alone (text or messages), as training sees it; used for sampling."""
        if isinstance(prompt, list):
            prompt = self.tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return self._prompt_ids(prompt)

    def _prompt_ids(self, text: str) -> list[int]:
        ids = self._ids(text)
        while self.bos is not None and len(ids) > 1 and ids[0] == ids[1] == self.bos:
            ids = ids[1:]
        if self.adds_bos and (not ids or ids[0] != self.bos):
            ids = [self.bos, *ids]
        return ids

    def _response_ids(self, text: str) -> list[int]:
        ids = self._ids(text)
        if self.eos is None:
            return ids
        if self.eos in ids:  # drop what a template writes after the final end-of-turn token
            return ids[: len(ids) - ids[::-1].index(self.eos)]
        return [*ids, self.eos]

    def token_ids(self, example: PreferenceExample) -> tuple[list[int], list[int], list[int]]:
        """Prompt, chosen and rejected ids before any truncation (``duelist check`` reports their lengths)."""
        p_text, c_text, r_text = render(self.tok, example)
        return self._prompt_ids(p_text), self._response_ids(c_text), self._response_ids(r_text)

    def __call__(self, example: PreferenceExample) -> TokenizedPair | None:
        return self.fit(*self.token_ids(example), example.extra)

    def fit(
        self, prompt: list[int], chosen: list[int], rejected: list[int], extra: dict[str, float] | None = None
    ) -> TokenizedPair | None:
        """Apply the length limits to untruncated ids: the pair as is, truncated, or None (dropped)."""
        extra = dict(extra or {})
        fits = len(prompt) <= self.max_prompt_length and len(prompt) + max(len(chosen), len(rejected)) <= (
            self.max_length
        )
        if fits:
            return TokenizedPair(prompt, chosen, rejected, extra=extra)
        if self.truncation == "drop":
            return None
        if len(prompt) > self.max_prompt_length:
            keep = self.max_prompt_length
            head = [self.bos] if self.adds_bos and prompt[0] == self.bos else []
            prompt = head + prompt[len(prompt) - (keep - len(head)) :]
        room = self.max_length - len(prompt)
        return TokenizedPair(prompt, chosen[:room], rejected[:room], truncated=True, extra=extra)

    def many(self, examples: Sequence[PreferenceExample]) -> tuple[list[TokenizedPair], list[int], int]:
        """Tokenize all; returns (pairs, indices of kept examples, number truncated)."""
        pairs, kept, truncated = [], [], 0
        for i, ex in enumerate(examples):
            tp = self(ex)
            if tp is None:
                continue
            pairs.append(tp)
            kept.append(i)
            truncated += tp.truncated
        return pairs, kept, truncated
