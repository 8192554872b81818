"""Stage 2: records → validated preference examples, in TRL's three preference formats.

* standard: ``prompt``, ``chosen``, ``rejected`` strings;
* conversational: the same keys holding lists of ``{"role", "content"}`` messages (``chosen`` and
  ``rejected`` are the assistant turn(s) that follow the prompt);
* implicit prompt: only ``chosen`` and ``rejected``, each a full transcript (string or messages); the
  prompt is their shared prefix. For Anthropic-HH style text the prompt ends right after the last
  shared ``\\n\\nAssistant:`` marker, so the response is the final assistant turn.

Besides the texts, a record may carry numeric per-pair fields that a loss reads (e.g. SPPO's win-rate
estimates ``p_win``/``p_lose``); ``validate(..., fields=...)`` checks that every record has them as
finite numbers in range and keeps them in ``PreferenceExample.extra``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from duelist.data.sources import DataError, Record

Messages = list[dict[str, str]]
ROLES = ("system", "user", "assistant", "tool")
ASSISTANT_MARKER = "\n\nAssistant:"


class RecordError(DataError):
    def __init__(self, record: Record, field: str, reason: str):
        self.record, self.field, self.reason = record, field, reason
        super().__init__(f"{record.where}, field {field!r}: {reason}")


@dataclass(frozen=True)
class PreferenceExample:
    prompt: str | Messages
    chosen: str | Messages
    rejected: str | Messages
    source: str = ""
    number: int = 0
    extra: dict[str, float] = dataclasses.field(default_factory=dict, compare=False)
    implicit_prompt: bool = dataclasses.field(default=False, compare=False)
    """The record had no ``prompt`` field: the prompt is the shared prefix of the two transcripts."""

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)

    @property
    def format(self) -> str:
        """``standard`` or ``conversational``, with ``, implicit prompt`` when the record had no prompt."""
        kind = "conversational" if self.conversational else "standard"
        return f"{kind}, implicit prompt" if self.implicit_prompt else kind


def _messages(record: Record, field: str, value: Any) -> Messages:
    if isinstance(value, dict):
        raise RecordError(record, field, "expected text or a list of {role, content} messages, got one object "
                          "(a single message must still be in a list)")
    if not isinstance(value, list):
        raise RecordError(record, field, f"expected text or a list of {{role, content}} messages, got "
                          f"{type(value).__name__} {value!r:.40}")
    if not value:
        raise RecordError(record, field, "expected a non-empty list of {role, content} messages, got []")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RecordError(record, f"{field}[{i}]", "expected a message {role, content}")
        if m["role"] not in ROLES:
            raise RecordError(record, f"{field}[{i}].role", f"unknown role {m['role']!r}; valid: {ROLES}")
        if not isinstance(m["content"], str):
            raise RecordError(record, f"{field}[{i}].content", "expected a string")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _value(record: Record, field: str) -> str | Messages:
    if field not in record.data:
        raise RecordError(record, field, "missing")
    if record.data[field] is None:
        raise RecordError(record, field, "null (expected text or a list of {role, content} messages)")
    v = record.data[field]
    if isinstance(v, str):
        if not v.strip():
            raise RecordError(record, field, "empty text")
        return v
    return _messages(record, field, v)


def split_implicit_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two transcripts into (prompt, chosen response, rejected response).

    The prompt is the longest common prefix, cut back to just after the last ``\\n\\nAssistant:``
    it contains when there is one (HH format), else to the last whitespace so no word is split.
    """
    n = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        n += 1
    common = chosen[:n]
    cut = common.rfind(ASSISTANT_MARKER)
    if cut >= 0:
        n = cut + len(ASSISTANT_MARKER)
    elif n < min(len(chosen), len(rejected)):
        n = max(common.rfind(" "), common.rfind("\n"), 0)
    return chosen[:n], chosen[n:], rejected[n:]


def _split_implicit_messages(record: Record, chosen: Messages, rejected: Messages):
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        raise RecordError(record, "chosen", "implicit-prompt conversations share no prompt with 'rejected'")
    return chosen[:n], chosen[n:], rejected[n:]


Bounds = tuple[float | None, float | None]


def numeric_fields(record: Record, fields: Mapping[str, Bounds]) -> dict[str, float]:
    """The record's values of ``fields`` (name → (low, high) bounds, None = open) as floats; raises
    ``RecordError`` naming the field if one is missing, not a number, not finite or out of range."""
    out = {}
    for name, (lo, hi) in fields.items():
        v = record.data.get(name)
        if v is None:
            raise RecordError(record, name, "missing (the loss reads this number for every pair)")
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise RecordError(record, name, f"expected a number, got {v!r}")
        try:
            x = float(v)
        except ValueError:
            raise RecordError(record, name, f"expected a number, got {v!r}") from None
        if not math.isfinite(x):
            raise RecordError(record, name, f"expected a finite number, got {v!r}")
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            raise RecordError(record, name, f"{x} is outside [{lo}, {hi}]")
        out[name] = x
    return out


def record_prompt(record: Record) -> Any:
    """A record's prompt: its ``prompt`` field, or for an implicit-prompt pair (``chosen``/``rejected`` transcripts
    only, e.g. Anthropic HH) their shared prefix; None when it has neither."""
    if "prompt" in record.data or "chosen" not in record.data:
        return record.data.get("prompt")
    return to_example(record).prompt


def to_example(record: Record, fields: Mapping[str, Bounds] | None = None) -> PreferenceExample:
    """Validate one record and turn it into a ``PreferenceExample`` (raises ``RecordError``); ``fields``
    are numeric per-pair fields to check and keep (see ``numeric_fields``)."""
    chosen, rejected = _value(record, "chosen"), _value(record, "rejected")
    if type(chosen) is not type(rejected):
        raise RecordError(record, "rejected", "must have the same type as 'chosen' (text or messages)")
    implicit = "prompt" not in record.data  # a null prompt is an error, not an implicit one
    if not implicit:
        prompt = _value(record, "prompt")
        if type(prompt) is not type(chosen):
            raise RecordError(record, "prompt", "must have the same type as 'chosen' (text or messages)")
    elif isinstance(chosen, str):
        assert isinstance(rejected, str)
        prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
        if not prompt.strip():
            raise RecordError(record, "chosen", "no 'prompt' field and no shared prefix with 'rejected'")
    else:
        assert isinstance(rejected, list)
        prompt, chosen, rejected = _split_implicit_messages(record, chosen, rejected)
    for field, resp in (("chosen", chosen), ("rejected", rejected)):
        if not resp or (isinstance(resp, str) and not resp.strip()):
            raise RecordError(record, field, "empty response after the prompt")
        if isinstance(resp, list) and resp[-1]["role"] != "assistant":
            raise RecordError(record, field, "the response must end with an assistant message")
    if chosen == rejected:
        raise RecordError(record, "rejected", "identical to 'chosen'")
    extra = numeric_fields(record, fields or {})
    return PreferenceExample(prompt, chosen, rejected, record.source, record.number, extra, implicit)


@dataclass
class Validated:
    examples: list[PreferenceExample]
    skipped: list[RecordError]

    @property
    def format(self) -> str:
        """The one format of every kept example (``validate`` refuses a mix)."""
        return self.examples[0].format

    def summary(self, limit: int = 5) -> str:
        if not self.skipped:
            return f"{len(self.examples)} examples, none skipped"
        shown = "; ".join(str(e) for e in self.skipped[:limit])
        more = f" (+{len(self.skipped) - limit} more)" if len(self.skipped) > limit else ""
        return f"{len(self.examples)} examples, skipped {len(self.skipped)} invalid: {shown}{more}"


def record_format(record: Record) -> str | None:
    """The format a raw record is written in (as ``PreferenceExample.format``), or None when its
    ``chosen`` is neither text nor messages (validation names that problem)."""
    chosen = record.data.get("chosen")
    if not isinstance(chosen, str | list):
        return None
    kind = "conversational" if isinstance(chosen, list) else "standard"
    return f"{kind}, implicit prompt" if "prompt" not in record.data else kind


def check_one_format(records: list[Record]) -> None:
    """Refuse a source mixing formats (text with messages, or records with and without a prompt): they
    render differently, so a mix is almost always two data sets concatenated by mistake. The error names
    the first record of the other format."""
    first, first_fmt = None, None
    for r in records:
        fmt = record_format(r)
        if fmt is None:
            continue
        if first is None:
            first, first_fmt = r, fmt
        elif fmt != first_fmt:
            field = "prompt" if ("prompt" in r.data) != ("prompt" in first.data) else "chosen"
            raise RecordError(
                r, field, f"a {fmt} record in a source whose first record ({first.where}) is {first_fmt}; "
                "one source must hold one format"
            )


def validate(
    records: Iterable[Record], on_invalid: str = "error", fields: Mapping[str, Bounds] | None = None
) -> Validated:
    """Validate every record before anything trains. ``on_invalid="error"`` raises a ``DataError``
    naming the first bad record (file, record number, field) and counting the others; ``"skip"`` drops
    them and reports which. A source that mixes formats is an error either way (``check_one_format``).
    ``fields``: numeric per-pair fields every record must carry (name → (low, high) bounds)."""
    records = list(records)
    check_one_format(records)
    examples, errors = [], []
    for r in records:
        try:
            examples.append(to_example(r, fields))
        except RecordError as e:
            errors.append(e)
    if errors and on_invalid == "error":
        n = len(errors) - 1
        more = f" (and {n} more invalid records: `duelist check CONFIG` lists them)" if n else ""
        raise DataError(f"{errors[0]}{more}; fix the data or set data.on_invalid=skip")
    if not examples:
        raise DataError(f"no valid records: all {len(errors)} are invalid, the first: {errors[0]}")
    return Validated(examples, errors)
