"""Users' data files, read through Hugging Face ``datasets`` with errors that name
the file, the row and the column.

``datasets`` reports an empty file, a file that is not UTF-8 or a malformed CSV
as ``DatasetGenerationError`` without saying which file; a CSV cell that is
empty, NaN or inf would flow on as NaN.  Everything here raises
``rnnlab.validation.InputError`` instead.  Rows count from 1, the first row
after a CSV's header; for a CSV, row r is line r + 1 of the file when no cell
spans lines.
"""

from __future__ import annotations

import codecs
import json
import math
import pathlib

import numpy as np

from rnnlab.validation import InputError

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_CLASSES = 1_000_000  # integer labels beyond this are not class ids (an id, a year, a price?)
TABLE_KINDS = {".csv": "csv", ".json": "json", ".jsonl": "json"}


def looks_local(source) -> bool:
    """A path, not a Hub dataset name: starts like a path or ends in a file extension."""
    return str(source).startswith((".", "/", "~")) or pathlib.Path(str(source)).suffix.lower() in (
        ".txt",
        ".csv",
        ".tsv",
        ".json",
        ".jsonl",
        ".parquet",
    )


def check_utf8(path: pathlib.Path, chunk_bytes: int = 1 << 20) -> int:
    """``path`` must decode as UTF-8; returns its size in bytes (read in chunks, never whole)."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(chunk_bytes):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    raise InputError(
                        f"{path} is not UTF-8 text: byte 0x{chunk[e.start]:02x} at offset "
                        f"{offset + e.start} ({e.reason}); save it as UTF-8"
                    ) from None
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text: it ends inside a multi-byte character") from None
    return offset


def check_text_files(files: list[pathlib.Path], source) -> None:
    """Every file UTF-8 and at least one with content (empty ones among others are fine)."""
    sizes = [check_utf8(f) for f in files]
    if not any(sizes):
        raise InputError(f"{source} is empty" if len(files) == 1 else f"every .txt file under {source} is empty")


def load_table(path, split: str = "train"):
    """A local CSV, JSON or JSON Lines file as a ``datasets.Dataset``."""
    import datasets

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    kind = TABLE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: expected a .csv, .json or .jsonl file")
    if check_utf8(path) == 0:
        raise InputError(f"{path} is empty")
    if kind == "json":
        check_json(path)
    try:
        return datasets.load_dataset(kind, data_files=str(path), split=split)
    except datasets.exceptions.DatasetGenerationError as e:
        cause = e.__cause__ or e.__context__ or e
        raise InputError(f"{path} could not be read as {kind.upper()}: {type(cause).__name__}: {cause}") from None


def check_json(path: pathlib.Path) -> None:
    """A JSON document or JSON Lines (one object per line), as ``datasets`` reads them; the
    error names the line (``datasets`` would log a traceback and name neither)."""
    text = path.read_text(encoding="utf-8")
    try:
        json.loads(text)
        return
    except json.JSONDecodeError as whole:
        lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) == 1:
            raise InputError(
                f"{path} is not valid JSON: {whole.msg} (line {whole.lineno}, column {whole.colno})"
            ) from None
    for i, line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: line {i} is not valid JSON: {e.msg} (column {e.colno})") from None


def column_values(table, name: str, source) -> list:
    """The values of one column, which must exist."""
    if name not in table.column_names:
        raise InputError(f"{source} has no column {name!r}; columns are {table.column_names}")
    return list(table[name])


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def text_cells(values: list, name: str, source) -> list[str]:
    """A column of text: no empty cell."""
    for row, value in enumerate(values, 1):
        if _is_missing(value):
            raise InputError(f"{source}: row {row}, column {name!r} is empty")
    return [str(v) for v in values]


def numeric_cells(values: list, name: str, source) -> np.ndarray:
    """A column of finite numbers: ``float32 [N]``; an empty, NaN, inf or non-numeric cell is an
    error naming its row (pandas reads an empty CSV cell as NaN, so the two are reported together)."""
    out = np.empty(len(values), np.float64)
    for row, value in enumerate(values, 1):
        if _is_missing(value):
            raise InputError(f"{source}: row {row}, column {name!r} is empty or NaN")
        try:
            out[row - 1] = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{source}: row {row}, column {name!r} is not a number: {value!r}") from None
        if not math.isfinite(out[row - 1]):
            raise InputError(f"{source}: row {row}, column {name!r} is {value!r}, not a finite number")
        if abs(out[row - 1]) > FLOAT32_MAX:  # float32 would make it inf
            raise InputError(f"{source}: row {row}, column {name!r} is {value!r}, beyond float32's ±3.4e38")
    return out.astype(np.float32)


def class_labels(values: list, name: str, source, class_names=None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class ids ``int32 [N]`` and the class names (id -> name), the way ``datasets``'
    ``ClassLabel`` has them.

    String labels (``pos``/``neg``) map to the ids of their sorted names; integer labels
    are their own ids, named ``"0"``, ``"1"``, ...  ``class_names`` (from the training
    file, say) fixes the mapping instead, and a label it lacks is an error.
    """
    for row, value in enumerate(values, 1):
        if _is_missing(value):
            raise InputError(f"{source}: row {row}, column {name!r} is empty")
    if all(isinstance(v, str) for v in values):
        names = tuple(class_names) if class_names is not None else tuple(sorted(set(values)))
        index = {n: i for i, n in enumerate(names)}
        for row, value in enumerate(values, 1):
            if value not in index:
                raise InputError(
                    f"{source}: row {row}, column {name!r}: label {value!r} is not one of the classes {list(names)}"
                )
        return np.array([index[v] for v in values], np.int32), names
    ids = np.zeros(len(values), np.int32)
    for row, value in enumerate(values, 1):
        if isinstance(value, (bool, str)) or not float(value).is_integer() or value < 0:
            raise InputError(
                f"{source}: row {row}, column {name!r}: labels must be class names or integers "
                f"0..C-1 (not a mix), got {value!r}"
            )
        if value >= MAX_CLASSES:  # a class id, not a count: past int32 it would wrap; far below, 10^9 names
            raise InputError(
                f"{source}: row {row}, column {name!r}: label {value!r} is not a class id 0..C-1 "
                f"(at most {MAX_CLASSES:,} classes)"
            )
        ids[row - 1] = int(value)
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(int(ids.max()) + 1))
    if ids.max() >= len(names):
        row = int(np.argmax(ids >= len(names))) + 1
        raise InputError(
            f"{source}: row {row}, column {name!r}: label {int(ids[row - 1])} is not one of the "
            f"{len(names)} classes {list(names)}"
        )
    return ids, names
