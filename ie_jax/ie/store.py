"""A run directory: the run's identity, its lock, and finished estimate chunks for resuming.

Layout of DIR:
  run.json            what was asked (model, data, estimator, sizes, seeds...): the run's identity
  chunks/NNNNN.json   MI estimates of one finished chunk of problems, written as the chunk completes
  result.json, result.csv   the IEResult, once every chunk is done
  states/*.npy        hidden states, only when asked (save_states=True)

  run.lock            held (flock) by the process writing the run; it names that process's pid

Every file is written whole or not at all (`ie_jax.fileio`), so a killed run leaves either the old file or the
new one, never half of one. run.json is created exclusively, under
the lock: of two runs started together into one directory, one proceeds and the other is refused. The kernel
releases the lock when its process dies, so a killed run resumes; the dead pid left in run.lock is named.
A rerun with the same identity skips the finished chunks; a different identity is refused. A damaged file is
named with the exact file to delete; files the run did not write (`00001 (copy).json`) are ignored.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import re
import socket
import warnings

import numpy as np

from ie_jax.fileio import atomic_save_npy, atomic_write_json, describe_error, exclusive_write_json, read_json
from ie_jax.ie.result import IEResult

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
RESULT_FILE = "result.json"
CHUNK_NAME = re.compile(r"\d{5}\.json")


class RunStore:
    """The finished work of one run in `out_dir`, keyed by the run's identity (a JSON-able dict).

    Holds the run's lock from construction until `close()` (or the process's end)."""

    def __init__(self, out_dir, identity: dict):
        self.dir = pathlib.Path(out_dir)
        self.identity = json.loads(json.dumps(identity, sort_keys=True))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = None
        self._refuse_foreign_directory()  # before the lock file is written into someone else's directory
        self._lock = _acquire_lock(self.dir)
        try:
            self._claim()
            self._remove_dead_temp_files()
        except BaseException:
            self.close()
            raise

    def _claim(self) -> None:
        run_file = self.dir / RUN_FILE
        if run_file.exists():
            held = read_json(run_file, fix=f"delete {self.dir} to start over")
            if held != self.identity:
                diff = sorted(k for k in set(held) | set(self.identity) if held.get(k) != self.identity.get(k))
                details = "; ".join(f"{k}: held {held.get(k)!r}, asked {self.identity.get(k)!r}" for k in diff)
                raise ValueError(f"{self.dir} holds another run (differs in {details}): choose another output "
                                 f"directory, or delete {self.dir} to start over")
        else:
            self._refuse_foreign_directory()
            exclusive_write_json(run_file, self.identity)

    def _remove_dead_temp_files(self) -> None:
        # Half-written files of a killed writer: with the lock held no live writer owns them.
        for d in (self.dir, self.dir / "chunks"):
            for p in d.glob(".*.tmp") if d.is_dir() else ():
                p.unlink(missing_ok=True)

    def _refuse_foreign_directory(self) -> None:
        if (self.dir / RUN_FILE).exists():
            return
        if any(p.name != LOCK_FILE and not p.name.startswith(".") for p in self.dir.iterdir()):
            raise ValueError(f"{self.dir} is not empty and holds no ie_jax run ({RUN_FILE} missing): choose an "
                             f"empty or new output directory")

    def close(self) -> None:
        """Release the run's lock (idempotent)."""
        if self._lock is not None:
            _HELD.pop(self.dir.resolve(), None)
            os.ftruncate(self._lock, 0)  # a lock file naming a pid is left only by a run that died
            os.close(self._lock)
            self._lock = None

    def chunk_path(self, index: int) -> pathlib.Path:
        return self.dir / "chunks" / f"{index:05d}.json"

    def finished_chunks(self) -> set[int]:
        """Indices of the chunk files the run wrote (NNNNN.json); any other file there is ignored."""
        d = self.dir / "chunks"
        return {int(p.stem) for p in d.iterdir() if CHUNK_NAME.fullmatch(p.name)} if d.is_dir() else set()

    def held_chunk_size(self) -> int | None:
        """Problems per chunk of a run already started (None if none finished): a resumed run keeps it. The
        last chunk's size: a run that halved its chunks after running out of memory resumes at the half."""
        for index in sorted(self.finished_chunks(), reverse=True):
            payload = self.load_chunk(index)
            if "chunk_size" in payload:
                return int(payload["chunk_size"])
            if index == 0:
                return len(payload["problems"])
        return None

    def load_chunk(self, index: int, decode=None) -> dict:
        """The chunk's payload {problems, estimates[, chunk_size]}; `decode` maps each estimate dict (e.g.
        MIEstimate.from_dict). A damaged or incomplete file is named with the fix: delete it."""
        path = self.chunk_path(index)
        fix = f"delete {path} and rerun to recompute that chunk"
        payload = read_json(path, fix=fix)
        missing = [k for k in ("problems", "estimates") if not isinstance(payload, dict) or k not in payload]
        if missing:
            raise ValueError(f"{path} is damaged (no {', '.join(missing)}): {fix}")
        if decode is not None:
            try:
                payload["estimates"] = [[decode(e) for e in row] for row in payload["estimates"]]
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ValueError(f"{path} is damaged (estimate {describe_error(e)}): {fix}") from e
        return payload

    def save_chunk(self, index: int, payload: dict) -> None:
        atomic_write_json(self.chunk_path(index), payload)

    def save_states(self, name: str, array: np.ndarray) -> pathlib.Path:
        return atomic_save_npy(self.dir / "states" / f"{name}.npy", array)

    def finished_result(self):
        """The run's IEResult if it finished (result.json written), else None."""
        if not (self.dir / RESULT_FILE).exists():
            return None
        return IEResult.from_json(self.dir)


def unfinished_runs(directory) -> list[pathlib.Path]:
    """Run directories at or under `directory` that were started (run.json) but hold no result.json."""
    return sorted(p.parent for p in pathlib.Path(directory).rglob(RUN_FILE) if not (p.parent / RESULT_FILE).exists())


# Locks this process holds, by run directory: a later RunStore of the same directory in this process (e.g. a
# rerun after an exception left the first one unclosed) takes the lock over instead of waiting on itself.
_HELD: dict[pathlib.Path, "int"] = {}


def _acquire_lock(run_dir: pathlib.Path) -> int:
    key = run_dir.resolve()
    own = key in _HELD
    if own:
        os.close(_HELD.pop(key))
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ValueError(f"{run_dir} is in use by another ie-jax run ({holder}): wait for it to finish, or choose "
                         f"another --out") from None
    previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
    if previous and not own and not (run_dir / RESULT_FILE).exists():
        # The lock is free, so the process named in it is gone: it stopped before the run finished.
        warnings.warn(f"{run_dir}: the previous run ({previous}) stopped before finishing (stale lock "
                      f"{path}); resuming from its finished chunks", stacklevel=3)
    me = f"pid {os.getpid()} on {socket.gethostname()}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, me.encode(), 0)
    _HELD[key] = fd
    return fd
