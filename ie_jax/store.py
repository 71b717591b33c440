"""A run directory: atomic writes, the run's identity, and finished estimate chunks for resuming.

Layout of DIR:
  run.json            what was asked (model, data, estimator, sizes, seeds...): the run's identity
  chunks/NNNNN.json   MI estimates of one finished chunk of problems, written as the chunk completes
  result.json, result.csv   the IEResult, once every chunk is done
  states/*.npy        hidden states, only when asked (save_states=True)

Every file is written to a temporary name in the same directory, then moved into place with os.replace, so a
killed run leaves either the old file or the new one, never half of one. A rerun with the same identity skips
the finished chunks; a different identity is refused.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

import numpy as np

RUN_FILE = "run.json"


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
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return atomic_write_bytes(path, buf.getvalue())


class RunStore:
    """The finished work of one run in `out_dir`, keyed by the run's identity (a JSON-able dict)."""

    def __init__(self, out_dir, identity: dict):
        self.dir = pathlib.Path(out_dir)
        self.identity = json.loads(json.dumps(identity, sort_keys=True))
        run_file = self.dir / RUN_FILE
        if run_file.exists():
            held = json.loads(run_file.read_text())
            if held != self.identity:
                diff = sorted(k for k in set(held) | set(self.identity) if held.get(k) != self.identity.get(k))
                details = "; ".join(f"{k}: held {held.get(k)!r}, asked {self.identity.get(k)!r}" for k in diff)
                raise ValueError(f"{self.dir} holds another run (differs in {details}): choose another output "
                                 f"directory, or delete {self.dir} to start over")
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise ValueError(f"{self.dir} is not empty and holds no ie_jax run ({RUN_FILE} missing): choose an "
                             f"empty or new output directory")
        else:
            atomic_write_json(run_file, self.identity)

    def chunk_path(self, index: int) -> pathlib.Path:
        return self.dir / "chunks" / f"{index:05d}.json"

    def finished_chunks(self) -> set[int]:
        d = self.dir / "chunks"
        return {int(p.stem) for p in d.glob("[0-9]*.json")} if d.is_dir() else set()

    def load_chunk(self, index: int) -> dict:
        return json.loads(self.chunk_path(index).read_text())

    def save_chunk(self, index: int, payload: dict) -> None:
        atomic_write_json(self.chunk_path(index), payload)

    def save_states(self, name: str, array: np.ndarray) -> pathlib.Path:
        return atomic_save_npy(self.dir / "states" / f"{name}.npy", array)
