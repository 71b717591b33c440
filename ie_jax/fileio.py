"""Files written whole or not at all, JSON written strictly and read back with a damaged file named with its fix.

Every write goes to a temporary name in the same directory, then os.replace moves it into place, so a killed
process leaves either the old file or the new one, never half of one. `read_json` turns a truncated or
non-JSON file into one ValueError line naming the file and what to do about it. `jsonable(obj)` turns numpy/jax
values inside dicts, lists and tuples into plain Python (NaN kept, or null with nan_to_null=True); `dumps` writes
strict JSON (NaN as null).
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import tempfile

import numpy as np


def atomic_write_bytes(path, data: bytes) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text: str) -> pathlib.Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> pathlib.Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def atomic_save_npy(path, array: np.ndarray) -> pathlib.Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return atomic_write_bytes(path, buf.getvalue())


def exclusive_write_json(path, obj) -> None:
    """Write `path` whole, failing (FileExistsError) if it already exists: a hard link of a complete temporary
    file, so of two writers racing for one name exactly one succeeds."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(obj, indent=1, sort_keys=True).encode())
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def read_json(path, *, fix: str):
    """JSON from `path`; a truncated or otherwise damaged file is named with `fix` (one line)."""
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is damaged ({describe_error(e)}): {fix}") from e


def describe_error(e: BaseException) -> str:
    """What is wrong with a file's content, in words, from the exception its parsing raised."""
    if isinstance(e, json.JSONDecodeError):
        return f"truncated or not JSON: {e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, KeyError):
        return f"missing key {e.args[0]!r}" if e.args else "missing key"
    return f"{type(e).__name__}: {e}"

def jsonable(obj, *, nan_to_null: bool = False):
    """obj with numpy/jax arrays and scalars turned into lists, floats, ints and bools; dict keys as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, nan_to_null=nan_to_null) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, nan_to_null=nan_to_null) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return None if nan_to_null and math.isnan(value) else value
    if hasattr(obj, "tolist"):  # numpy or jax arrays
        return jsonable(obj.tolist(), nan_to_null=nan_to_null)
    return obj


def dumps(obj, *, indent: int = 1) -> str:
    """Strict JSON text of obj (NaN written as null)."""
    return json.dumps(jsonable(obj, nan_to_null=True), indent=indent)
