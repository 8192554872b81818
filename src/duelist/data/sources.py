"""Stage 1: read raw records from files, directories, built-in tasks or ``datasets`` datasets.

Every record keeps where it came from (file and 1-based record number) so that validation errors
can point at it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPORTED = (".jsonl", ".json", ".parquet", ".csv", ".jsonl.gz", ".json.gz")


class DataError(ValueError):
    """A problem with input data; the message names the file, record and field."""


@dataclass(frozen=True)
class Record:
    source: str
    number: int  # 1-based position in its source (the line number for JSONL)
    data: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source}, record {self.number}"


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _read_jsonl(path: Path) -> Iterator[Record]:
    with _open_text(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, record {i}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}, record {i}: expected a JSON object, got {type(obj).__name__}")
            yield Record(str(path), i, obj)


def _read_json(path: Path) -> Iterator[Record]:
    with _open_text(path) as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(obj, dict) and all(isinstance(v, list) for v in obj.values()):  # columns
        n = len(next(iter(obj.values()), []))
        obj = [{k: v[i] for k, v in obj.items()} for i in range(n)]
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a list of records or a mapping of columns")
    for i, row in enumerate(obj, 1):
        if not isinstance(row, dict):
            raise DataError(f"{path}, record {i}: expected an object, got {type(row).__name__}")
        yield Record(str(path), i, row)


def _read_table(path: Path) -> Iterator[Record]:
    import pandas as pd

    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, keep_default_na=False)
    for i, row in enumerate(df.to_dict(orient="records"), 1):
        yield Record(str(path), i, {k: _plain(v) for k, v in row.items()})


def _plain(v: Any) -> Any:
    """numpy arrays / scalars from parquet → plain Python (lists of message dicts stay lists)."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix


def read_file(path: Path) -> Iterator[Record]:
    suf = _suffix(path)
    if suf in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(path)
    if suf in (".json", ".json.gz"):
        return _read_json(path)
    if suf in (".parquet", ".csv"):
        return _read_table(path)
    raise DataError(f"{path}: unsupported file type {suf!r}; supported: {', '.join(SUPPORTED)}")


def _read_dataset(ds: Any, name: str) -> Iterator[Record]:
    for i, row in enumerate(ds, 1):
        yield Record(name, i, row)


def read_records(spec: Any, split: str = "train") -> list[Record]:
    """Read every record of ``spec``: a built-in task name, a file, a directory (its data files in
    name order, or a dataset saved with ``save_to_disk``), ``hf:<name>`` (hub or local builder), or a
    ``datasets.Dataset`` object."""
    from duelist.data import tasks

    if not isinstance(spec, str | Path):  # a datasets.Dataset / DatasetDict / iterable of dicts
        if hasattr(spec, "keys") and split in spec:
            spec = spec[split]
        name = getattr(getattr(spec, "info", None), "dataset_name", None) or "dataset"
        return list(_read_dataset(spec, name))
    s = str(spec)
    if tasks.is_task(s):
        return list(read_file(tasks.data_file(s, split)))
    if s.startswith("hf:"):
        import datasets

        ds = datasets.load_dataset(s[3:], split=split)
        return list(_read_dataset(ds, s))
    path = Path(s).expanduser()
    if path.is_file():
        return list(read_file(path))
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            import datasets

            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
            return list(_read_dataset(ds, str(path)))
        files = sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in SUPPORTED)
        if not files:
            raise DataError(f"{path}: no data files ({', '.join(SUPPORTED)}) in this directory")
        return [r for f in files for r in read_file(f)]
    raise DataError(
        f"data source {s!r} is not a file, a directory, a built-in task ({', '.join(tasks.names())}) or hf:<dataset>"
    )
