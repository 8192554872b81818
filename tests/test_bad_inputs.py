"""The bad-input corpus: malformed and tolerated inputs across JSONL, JSON, CSV, Parquet, directories and
``save_to_disk`` dataset folders, each with its expected outcome, through the public CLI.

A malformed input must stop ``duelist train`` before any model is loaded with exit code 2 and one line
on stderr naming the file, the record (or line) and the field, never a traceback, and leave nothing in
the output folder; ``duelist check`` must report the same problem. A tolerated variant (byte-order mark,
CRLF, blank lines, extra fields, hidden files in a directory, …) must read to exactly the examples of its
clean version.
"""

from __future__ import annotations

import codecs
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from duelist.cli import main
from duelist.data.formats import validate
from duelist.data.sources import read_records

STD = [{"prompt": f"the movie {i} was", "chosen": f" great {i}", "rejected": f" bad {i}"} for i in range(4)]
CONV = [
    {
        "prompt": [{"role": "user", "content": f"review {i}"}],
        "chosen": [{"role": "assistant", "content": f"great {i}"}],
        "rejected": [{"role": "assistant", "content": f"bad {i}"}],
    }
    for i in range(4)
]


def lines(rows: list[dict], eol: str = "\n") -> str:
    return "".join(json.dumps(r) + eol for r in rows)


def put(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def with_row(rows: list[dict], i: int, **changes) -> list[dict]:
    out = [dict(r) for r in rows]
    out[i].update(changes)
    for k in [k for k, v in changes.items() if v is _DROP]:
        del out[i][k]
    return out


_DROP = object()


def saved(ds_or_dict, path: Path) -> Path:
    ds_or_dict.save_to_disk(str(path))
    return path


def hub(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_list(rows)


def hub_dict(**splits: list[dict]):
    import datasets

    return datasets.DatasetDict({k: hub(v) for k, v in splits.items()})


def damaged_hub(d: Path) -> Path:
    saved(hub(STD), d)
    for f in d.glob("*.arrow"):
        f.unlink()
    return d


def directory(d: Path, files: dict[str, str | bytes]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        put(d / name, content)
    return d


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path | str]  # tmp folder → data.train
    expect: list[str] | None = None  # substrings of the one error line; None: the input is tolerated
    clean: list[dict] | None = None  # tolerated: the records it must read as (default STD)
    fmt: str = "standard"
    overrides: tuple[str, ...] = ()


BOM = codecs.BOM_UTF8.decode()
CASES = [
    # JSONL: tolerated
    Case("jsonl-bom", lambda t: put(t / "x.jsonl", BOM + lines(STD))),
    Case("jsonl-crlf", lambda t: put(t / "x.jsonl", lines(STD, "\r\n"))),
    Case("jsonl-blank-lines",
         lambda t: put(t / "x.jsonl", "\n" + lines(STD[:2]) + "   \n\r\n" + lines(STD[2:]) + "\n\n")),
    Case("jsonl-extra-fields", lambda t: put(t / "x.jsonl", lines([{**r, "id": 7, "meta": {"a": [1]}} for r in STD]))),
    Case("jsonl-gz-bom-crlf", lambda t: put(t / "x.jsonl.gz", gzip.compress((BOM + lines(STD, "\r\n")).encode()))),
    Case("jsonl-conversational", lambda t: put(t / "x.jsonl", lines(CONV)), clean=CONV, fmt="conversational"),
    # JSONL: malformed
    Case("jsonl-not-utf8", lambda t: put(t / "x.jsonl", lines(STD[:2]).encode() + b'{"prompt": "caf\xe9"}\n'),
         ["x.jsonl, line 3", "not UTF-8", "0xe9", "column 16"]),
    Case("jsonl-bad-json", lambda t: put(t / "x.jsonl", lines(STD[:1]) + '{"prompt": "a", "chosen":\n'),
         ["x.jsonl, record 2", "not valid JSON"]),
    Case("jsonl-array-line", lambda t: put(t / "x.jsonl", lines(STD[:1]) + '["a", "b"]\n'),
         ["x.jsonl, record 2", "expected a JSON object, got list"]),
    Case("jsonl-null-prompt", lambda t: put(t / "x.jsonl", lines(with_row(STD, 2, prompt=None))),
         ["x.jsonl, record 3, field 'prompt'", "null"]),
    Case("jsonl-null-chosen", lambda t: put(t / "x.jsonl", lines(with_row(STD, 1, chosen=None))),
         ["x.jsonl, record 2, field 'chosen'", "null"]),
    Case("jsonl-missing-rejected", lambda t: put(t / "x.jsonl", lines(with_row(STD, 3, rejected=_DROP))),
         ["x.jsonl, record 4, field 'rejected'", "missing"]),
    Case("jsonl-number-chosen", lambda t: put(t / "x.jsonl", lines(with_row(STD, 0, chosen=3))),
         ["x.jsonl, record 1, field 'chosen'", "expected text or a list of {role, content} messages, got int"]),
    Case("jsonl-identical", lambda t: put(t / "x.jsonl", lines(with_row(STD, 1, rejected=" great 1"))),
         ["x.jsonl, record 2, field 'rejected'", "identical"]),
    Case("jsonl-empty-text", lambda t: put(t / "x.jsonl", lines(with_row(STD, 1, chosen="  "))),
         ["x.jsonl, record 2, field 'chosen'", "empty text"]),
    Case("jsonl-mixed-standard-conversational", lambda t: put(t / "x.jsonl", lines(STD[:2] + CONV[:2])),
         ["x.jsonl, record 3, field 'chosen'", "a conversational record", "x.jsonl, record 1) is standard"]),
    Case("jsonl-mixed-implicit-prompt", lambda t: put(t / "x.jsonl", lines(with_row(STD, 1, prompt=_DROP))),
         ["x.jsonl, record 2, field 'prompt'", "standard, implicit prompt record", "is standard;"]),
    Case("jsonl-unknown-role", lambda t: put(t / "x.jsonl", lines(
        with_row(CONV, 1, chosen=[{"role": "robot", "content": "x"}]))),
         ["x.jsonl, record 2, field 'chosen[0].role'", "unknown role 'robot'"]),
    Case("jsonl-content-not-text", lambda t: put(t / "x.jsonl", lines(
        with_row(CONV, 0, chosen=[{"role": "assistant", "content": ["x"]}]))),
         ["x.jsonl, record 1, field 'chosen[0].content'", "expected a string"]),
    Case("jsonl-response-not-assistant", lambda t: put(t / "x.jsonl", lines(
        with_row(CONV, 2, rejected=[{"role": "user", "content": "x"}]))),
         ["x.jsonl, record 3, field 'rejected'", "must end with an assistant message"]),
    Case("jsonl-message-not-in-list", lambda t: put(t / "x.jsonl", lines(
        with_row(CONV, 1, chosen={"role": "assistant", "content": "x"}))),
         ["x.jsonl, record 2, field 'chosen'", "got one object"]),
    Case("jsonl-empty-file", lambda t: put(t / "x.jsonl", "\n\n"), ["x.jsonl: no records"]),
    Case("jsonl-gz-not-gzip", lambda t: put(t / "x.jsonl.gz", lines(STD)), ["x.jsonl.gz: cannot read the file"]),
    Case("sppo-field-not-finite", lambda t: put(t / "x.jsonl", lines(
        [{**r, "p_win": 0.6, "p_lose": 0.4} for r in STD[:2]] + [{**STD[2], "p_win": float("nan"), "p_lose": 0.4}])),
         ["x.jsonl, record 3, field 'p_win'", "finite"], overrides=("loss.name=sppo",)),
    # JSON
    Case("json-bom", lambda t: put(t / "x.json", BOM + json.dumps(STD))),
    Case("json-columns", lambda t: put(t / "x.json", json.dumps({k: [r[k] for r in STD] for k in STD[0]}))),
    Case("json-columns-unequal", lambda t: put(t / "x.json", json.dumps(
        {"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e", "f", "g"]})),
         ["x.json: a mapping of columns needs columns of one length", "'rejected': 3"]),
    Case("json-one-record-not-a-list", lambda t: put(t / "x.json", json.dumps(STD[0])),
         ["x.json: expected a list of records or a mapping of columns, got dict"]),
    Case("json-not-utf8",
         lambda t: put(t / "x.json", json.dumps(STD, indent=1).encode().replace(b"great 2", b"gr\xffat 2")),
         ["x.json, line 14", "not UTF-8", "0xff at column 17"]),
    Case("json-invalid", lambda t: put(t / "x.json", '[\n {"prompt": "a",\n  "chosen" "b"}\n]'),
         ["x.json, line 3", "not valid JSON"]),
    Case("json-row-not-object", lambda t: put(t / "x.json", json.dumps([STD[0], ["a"]])),
         ["x.json, record 2", "expected an object, got list"]),
    # CSV
    Case("csv-bom", lambda t: put(t / "x.csv", BOM + pd.DataFrame(STD).to_csv(index=False))),
    Case("csv-crlf", lambda t: put(t / "x.csv", pd.DataFrame(STD).to_csv(index=False, lineterminator="\r\n"))),
    Case("csv-numbers-stay-text", lambda t: put(t / "x.csv", "prompt,chosen,rejected\n1,2,3\n007,1.50,1.5\n"),
         clean=[{"prompt": "1", "chosen": "2", "rejected": "3"},
                {"prompt": "007", "chosen": "1.50", "rejected": "1.5"}]),
    Case("csv-ragged-row", lambda t: put(t / "x.csv", "prompt,chosen,rejected\na,b,c\nd,e,f,g\n"),
         ["x.csv: not valid CSV", "line 3"]),
    Case("csv-not-utf8", lambda t: put(t / "x.csv", b"prompt,chosen,rejected\na,b,c\nd,\xe9,f\n"),
         ["x.csv, line 3", "not UTF-8", "0xe9"]),
    Case("csv-empty-cell", lambda t: put(t / "x.csv", "prompt,chosen,rejected\na,b,c\nd,,f\n"),
         ["x.csv, record 2, field 'chosen'", "empty text"]),
    Case("csv-missing-column", lambda t: put(t / "x.csv", "prompt,chosen\na,b\n"),
         ["x.csv, record 1, field 'rejected'", "missing"]),
    Case("csv-empty-file", lambda t: put(t / "x.csv", ""), ["x.csv: empty file"]),
    # Parquet
    Case("parquet-conversational-extra-columns", lambda t: _parquet(t, [{**r, "score": 1.5} for r in CONV]),
         clean=CONV, fmt="conversational"),
    Case("parquet-null-prompt", lambda t: _parquet(t, with_row(STD, 1, prompt=None)),
         ["x.parquet, record 2, field 'prompt'", "null"]),
    Case("parquet-not-parquet", lambda t: put(t / "x.parquet", lines(STD)), ["x.parquet: not a readable Parquet file"]),
    # directories
    Case("dir-empty", lambda t: directory(t / "d", {"notes.txt": "hello"}), ["d: no data files"]),
    Case("dir-hidden-and-unsupported-ignored", lambda t: directory(t / "d", {
        "a.jsonl": lines(STD[:2]), "b.csv": pd.DataFrame(STD[2:]).to_csv(index=False), "notes.txt": "{not data",
        ".ipynb_checkpoints/a-checkpoint.jsonl": "{broken", ".b.jsonl.swp.jsonl": "{broken"})),
    Case("dir-bad-file", lambda t: directory(t / "d", {"a.jsonl": lines(STD), "b.jsonl": lines(STD[:1]) + "{oops\n"}),
         ["b.jsonl, record 2", "not valid JSON"]),
    Case("dir-mixed-formats-across-files",
         lambda t: directory(t / "d", {"a.jsonl": lines(STD), "b.jsonl": lines(CONV)}),
         ["b.jsonl, record 1, field 'chosen'", "a conversational record", "a.jsonl, record 1) is standard"]),
    # save_to_disk dataset folders
    Case("hub-dataset", lambda t: saved(hub(STD), t / "ds")),
    Case("hub-dataset-dict", lambda t: saved(hub_dict(train=STD, test=STD[:1]), t / "ds")),
    Case("hub-conversational", lambda t: saved(hub(CONV), t / "ds"), clean=CONV, fmt="conversational"),
    Case("hub-missing-split", lambda t: saved(hub_dict(test=STD), t / "ds"), ["ds: no split 'train'", "splits: test"]),
    Case("hub-null-prompt", lambda t: saved(hub(with_row(STD, 1, prompt=None)), t / "ds"),
         ["ds, record 2, field 'prompt'", "null"]),
    Case("hub-no-rejected-column",
         lambda t: saved(hub([{k: r[k] for k in ("prompt", "chosen")} for r in STD]), t / "ds"),
         ["ds, record 1, field 'rejected'", "missing"]),
    Case("hub-damaged-folder", lambda t: damaged_hub(t / "ds"), ["ds: cannot load this saved dataset"]),
    # sources
    Case("unsupported-file-type", lambda t: put(t / "x.txt", lines(STD)), ["x.txt: unsupported file type '.txt'"]),
    Case("missing-path", lambda t: str(t / "nowhere.jsonl"), ["nowhere.jsonl' is not a file, a directory"]),
    Case("task-unknown-split", lambda t: "positive-review:nosuch", ["task 'positive-review' has no split 'nosuch'"]),
]


def _parquet(t: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_parquet(t / "x.parquet")
    return t / "x.parquet"


def _args(command: str, model: Path, data: Path | str, out: Path, case: Case) -> list[str]:
    return [
        command,
        f"model.name={model}",
        f"data.train={data}",
        f"train.output_dir={out}",
        "train.steps=1",
        "train.batch_size=1",
        "train.progress=false",
        "train.tensorboard=false",
        *case.overrides,
    ]


def test_corpus_is_large_and_varied():
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)
    kinds = {c.name.split("-")[0] for c in CASES}
    assert {"jsonl", "json", "csv", "parquet", "dir", "hub"} <= kinds


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_corpus(case: Case, tiny_model_dir, tmp_path, capsys):
    data = case.build(tmp_path)
    capsys.readouterr()  # what building the input printed (datasets' progress bars)
    out = tmp_path / "run"
    if case.expect is None:
        # tolerated: exactly the records of the clean version, and `check` sees them all, in one format
        got = validate(read_records(str(data))).examples
        clean = validate(read_records(str(put(tmp_path / "clean.jsonl", lines(case.clean or STD))))).examples
        assert [(e.prompt, e.chosen, e.rejected) for e in got] == [(e.prompt, e.chosen, e.rejected) for e in clean]
        assert main([*_args("check", tiny_model_dir, data, out, case), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)["data"]
        assert (report["kept"], report["invalid"], report["format"]) == (len(clean), [], case.fmt)
        return
    rc = main(_args("train", tiny_model_dir, data, out, case))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for part in case.expect:
        assert part in err, (part, err)
    assert not out.exists() or not any(out.iterdir())
    # `check` names the same problem (a record-level one among all invalid records it lists) and exits 2
    rc = main(_args("check", tiny_model_dir, data, out, case))
    both = capsys.readouterr()
    assert rc == 2 and "Traceback" not in both.err
    for part in case.expect:
        assert part in both.out + both.err, (part, both)
    assert not out.exists()
