"""Stage 1: read raw records from files, directories, built-in tasks or ``datasets`` datasets.

Every record keeps where it came from (file and 1-based record number) so that validation errors
can point at it. Anything unreadable stops here with a ``DataError`` naming the file and the line or
record, never a library traceback. Tolerated: a UTF-8 byte-order mark (what many Windows tools write),
CRLF line ends, blank lines, and fields nobody reads.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import zlib
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


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read the file ({e})") from None


def _decode(path: Path, raw: bytes, first_line: int = 1) -> str:
    """UTF-8 text without a byte-order mark; a byte that is not UTF-8 is named by line and column."""
    if first_line == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def _read_jsonl(path: Path) -> Iterator[Record]:
    for i, raw in enumerate(_read_bytes(path).splitlines(), 1):
        line = _decode(path, raw, i)
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, record {i}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}, record {i}: expected a JSON object, got {type(obj).__name__}")
        yield Record(str(path), i, obj)


def _columns_to_rows(path: Path, obj: dict[str, list[Any]]) -> list[Any]:
    lengths = {k: len(v) for k, v in obj.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
        raise DataError(f"{path}: a mapping of columns needs columns of one length, got {shown}")
    n = next(iter(lengths.values()), 0)
    return [{k: v[i] for k, v in obj.items()} for i in range(n)]


def _read_json(path: Path) -> Iterator[Record]:
    text = _decode(path, _read_bytes(path))
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):
        obj = _columns_to_rows(path, obj)
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a list of records or a mapping of columns, got {type(obj).__name__}")
    for i, row in enumerate(obj, 1):
        if not isinstance(row, dict):
            raise DataError(f"{path}, record {i}: expected an object, got {type(row).__name__}")
        yield Record(str(path), i, row)


def _read_csv(path: Path) -> Iterator[Record]:
    import pandas as pd

    text = _decode(path, _read_bytes(path))
    try:  # every cell as text: a prompt "42" stays a string; numeric fields are parsed where they are read
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (a CSV file needs a header row)") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not valid CSV ({str(e).strip()})") from None
    for i, row in enumerate(df.to_dict(orient="records"), 1):
        yield Record(str(path), i, row)


def _read_parquet(path: Path) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # to_pylist gives plain Python: None for nulls, lists of dicts for message columns
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    for i, row in enumerate(rows, 1):
        yield Record(str(path), i, row)


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix


_READERS = {
    ".jsonl": _read_jsonl,
    ".jsonl.gz": _read_jsonl,
    ".json": _read_json,
    ".json.gz": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


def read_file(path: Path) -> Iterator[Record]:
    suf = _suffix(path)
    if suf not in _READERS:
        raise DataError(f"{path}: unsupported file type {suf!r}; supported: {', '.join(SUPPORTED)}")
    return _READERS[suf](path)


def _read_dataset(ds: Any, name: str) -> Iterator[Record]:
    for i, row in enumerate(ds, 1):
        yield Record(name, i, row)


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {next(iter(str(e).strip().splitlines()), '')}"


def _load_saved(path: Path, split: str) -> Any:
    """A folder written by ``datasets``' ``save_to_disk`` (one dataset, or a dict of splits)."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # anything failing inside load_from_disk: this folder is unreadable
        raise DataError(f"{path}: cannot load this saved dataset ({_why(e)})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{path}: no split {split!r} in this saved dataset; splits: {', '.join(ds)}")
        ds = ds[split]
    return ds


def _data_files(path: Path) -> list[Path]:
    """The data files under a directory in name order; hidden files and folders (editor backups,
    ``.ipynb_checkpoints``) are not data."""
    files = (p for p in path.rglob("*") if p.is_file() and _suffix(p) in SUPPORTED)
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(path).parts))


def _read_path(s: str, split: str) -> list[Record]:
    from duelist.data import tasks

    if tasks.is_task(s):
        try:
            return list(read_file(tasks.data_file(s, split)))
        except KeyError as e:
            raise DataError(e.args[0]) from None
    if s.startswith("hf:"):
        import datasets

        try:
            ds = datasets.load_dataset(s[3:], split=split)
        except Exception as e:  # not found, offline, no such split: all "this name cannot be loaded"
            raise DataError(f"{s}: cannot load this dataset, split {split!r} ({_why(e)})") from None
        return list(_read_dataset(ds, s))
    path = Path(s).expanduser()
    if path.is_file():
        return list(read_file(path))
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return list(_read_dataset(_load_saved(path, split), str(path)))
        files = _data_files(path)
        if not files:
            raise DataError(f"{path}: no data files ({', '.join(SUPPORTED)}) in this directory")
        return [r for f in files for r in read_file(f)]
    raise DataError(
        f"data source {s!r} is not a file, a directory, a built-in task ({', '.join(tasks.names())}) or hf:<dataset>"
    )


def read_records(spec: Any, split: str = "train") -> list[Record]:
    """Read every record of ``spec``: a built-in task name, a file, a directory (its data files in
    name order, or a dataset saved with ``save_to_disk``), ``hf:<name>`` (hub or local builder), or a
    ``datasets.Dataset`` object. A source without a single record is an error."""
    if not isinstance(spec, str | Path):  # a datasets.Dataset / DatasetDict / iterable of dicts
        if hasattr(spec, "keys") and split in spec:
            spec = spec[split]
        name = getattr(getattr(spec, "info", None), "dataset_name", None) or "dataset"
        records = list(_read_dataset(spec, name))
    else:
        records = _read_path(str(spec), split)
    if not records:
        raise DataError(f"{spec}: no records (the source is empty)")
    return records
