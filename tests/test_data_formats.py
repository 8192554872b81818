"""Records → examples: TRL's three formats, five source kinds, and errors naming file, record, field."""

import gzip
import json

import pandas as pd
import pytest

from duelist.data import tasks
from duelist.data.formats import PreferenceExample, split_implicit_prompt, to_example, validate
from duelist.data.sources import DataError, Record, read_records

STD = {"prompt": "Q?", "chosen": " yes", "rejected": " no"}
CONV = {
    "prompt": [{"role": "user", "content": "Q?"}],
    "chosen": [{"role": "assistant", "content": "yes"}],
    "rejected": [{"role": "assistant", "content": "no"}],
}


def rec(data, n=1):
    return Record("f.jsonl", n, data)


def test_standard_and_conversational():
    a = to_example(rec(STD))
    assert (a.prompt, a.chosen, a.rejected, a.conversational) == ("Q?", " yes", " no", False)
    b = to_example(rec(CONV))
    assert b.conversational and b.chosen == [{"role": "assistant", "content": "yes"}]


def test_implicit_prompt_text_and_messages():
    p, c, r = split_implicit_prompt("\n\nHuman: hi\n\nAssistant: hello there", "\n\nHuman: hi\n\nAssistant: go away")
    assert (p, c, r) == ("\n\nHuman: hi\n\nAssistant:", " hello there", " go away")
    # shared words beyond the marker stay in the responses: the response is the whole last turn
    p, c, r = split_implicit_prompt("\n\nHuman: x\n\nAssistant: I think so", "\n\nHuman: x\n\nAssistant: I do not")
    assert p.endswith("Assistant:") and c == " I think so" and r == " I do not"
    # no marker: cut at a word boundary, never inside a word
    p, c, r = split_implicit_prompt("The film was great", "The film was grim")
    assert (p, c, r) == ("The film was", " great", " grim")
    conv = to_example(rec({"chosen": CONV["prompt"] + CONV["chosen"], "rejected": CONV["prompt"] + CONV["rejected"]}))
    assert conv.prompt == CONV["prompt"] and conv.rejected == CONV["rejected"]


def test_hh_real_records_split_at_last_assistant_turn():
    """Every real HH record: prompt = transcript through the final '\\n\\nAssistant:', responses hold
    no further Human turn, and prompt + response reproduces the original transcript."""
    records = read_records("hh-harmless", "train") + read_records("hh-harmless", "test")
    assert len(records) == 1498
    for r in records:
        ex = to_example(r)
        assert ex.prompt.endswith("\n\nAssistant:")
        assert ex.prompt.count("\n\nHuman:") == r.data["chosen"].count("\n\nHuman:")
        assert "\n\nHuman:" not in ex.chosen and "\n\nHuman:" not in ex.rejected
        assert ex.prompt + ex.chosen == r.data["chosen"] and ex.prompt + ex.rejected == r.data["rejected"]


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"prompt": "Q", "chosen": "a"}, "rejected", "missing"),
        ({"prompt": "Q", "chosen": "a", "rejected": 3}, "rejected", "messages"),
        ({"prompt": "Q", "chosen": "a", "rejected": "a"}, "rejected", "identical"),
        ({"prompt": "Q", "chosen": "  ", "rejected": "a"}, "chosen", "empty"),
        ({**CONV, "chosen": [{"role": "robot", "content": "x"}]}, "chosen[0].role", "unknown role"),
        ({**CONV, "prompt": "text"}, "prompt", "same type"),
        ({"chosen": "abc", "rejected": "xyz"}, "chosen", "no shared prefix"),
    ],
)
def test_invalid_records_name_file_record_field(data, field, reason):
    with pytest.raises(DataError) as e:
        validate([rec(data, 7)])
    msg = str(e.value)
    assert "f.jsonl, record 7" in msg and f"field {field!r}" in msg and reason in msg


def test_skip_invalid_reports_which():
    out = validate([rec(STD, 1), rec({"prompt": "Q"}, 2), rec(STD, 3)], on_invalid="skip")
    assert [e.number for e in out.examples] == [1, 3]
    assert [e.record.number for e in out.skipped] == [2]
    assert "skipped 1 invalid: f.jsonl, record 2, field 'chosen': missing" in out.summary()


def test_readers_jsonl_json_parquet_csv_dir_and_dataset(tmp_path):
    rows = [STD, {**STD, "prompt": "Q2?"}]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(tmp_path / "d" / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps(rows[0]) + "\n")
    (tmp_path / "c.json").write_text(json.dumps(rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    pd.DataFrame(rows).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame([CONV]).to_parquet(tmp_path / "conv.parquet")
    for name in ("c.json", "c.parquet", "c.csv"):
        got = read_records(str(tmp_path / name))
        assert [dict(r.data) for r in got] == rows and [r.number for r in got] == [1, 2]
    assert len(read_records(str(tmp_path / "d"))) == 3
    conv = to_example(read_records(str(tmp_path / "conv.parquet"))[0])
    assert conv.prompt == CONV["prompt"]
    import datasets

    ds = datasets.Dataset.from_list(rows)
    assert [dict(r.data) for r in read_records(ds)] == rows
    ds.save_to_disk(str(tmp_path / "saved"))
    assert len(read_records(str(tmp_path / "saved"))) == 2


def test_bad_json_line_is_named(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(STD) + "\n{not json\n")
    with pytest.raises(DataError, match=r"x.jsonl, record 2: not valid JSON"):
        read_records(str(p))


def test_unknown_source_lists_tasks():
    with pytest.raises(DataError, match="positive-review"):
        read_records("/no/such/file.jsonl")


def test_builtin_task_files_are_valid():
    for name in tasks.names():
        ex = validate(read_records(name, "train")).examples
        assert len(ex) > 100 and all(isinstance(e, PreferenceExample) for e in ex)
