"""A sweep killed mid-way resumes from its finished chunks and ends with the uninterrupted run's numbers."""

import json
import os
import pathlib

import numpy as np
import pytest

import ie_jax
from ie_jax.fileio import dumps
from ie_jax import fileio
from ie_jax.ie import data
from ie_jax.models import random_model

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def lm():
    return random_model(TINY, seed=3)


@pytest.fixture(scope="module")
def toy():
    ids = np.random.default_rng(0).integers(0, 8, (60, 3)).astype(np.int32)
    return data.TokenData(ids, "toy", "icl", "toy")


def _run(lm, toy, out, on_chunk=None, **kw):
    args = dict(estimator="noise", sigma=[0.5], n_mc=32, chunk_size=3)
    args.update(kw)
    return ie_jax.measure(lm, toy, out=out, on_chunk=on_chunk, **args)


def _numbers(result):
    """Estimates and summary as read back from JSON: NaN (an IE that is not a measurement) compares equal as null."""
    d = json.loads(dumps(result.to_dict()))
    return d["estimates"], d["summary"]


@pytest.mark.slow
def test_killed_run_resumes_and_matches_uninterrupted(lm, toy, tmp_path):
    full = _run(lm, toy, tmp_path / "full")  # 2 layers x (3 context + 3 micro) = 12 problems, 4 chunks
    assert len(os.listdir(tmp_path / "full" / "chunks")) == 4

    def kill_after_two(index, n_chunks):
        assert n_chunks == 4
        if index == 1:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        _run(lm, toy, out, on_chunk=kill_after_two)
    assert not (out / "result.json").exists()
    chunk_dir = out / "chunks"
    assert sorted(os.listdir(chunk_dir)) == ["00000.json", "00001.json"]
    before = {p: (os.stat(chunk_dir / p).st_mtime_ns, (chunk_dir / p).read_text()) for p in os.listdir(chunk_dir)}

    seen = []
    resumed = _run(lm, toy, out, on_chunk=lambda i, n: seen.append(i))
    assert seen == [0, 1, 2, 3]
    for p, (mtime, text) in before.items():  # finished chunks were read back, not recomputed
        assert os.stat(chunk_dir / p).st_mtime_ns == mtime and (chunk_dir / p).read_text() == text
    assert _numbers(resumed) == _numbers(full)
    np.testing.assert_array_equal(resumed.ie, full.ie)
    assert IEResultFile(out) == IEResultFile(tmp_path / "full")
    # a finished run reruns from its chunks alone
    again = _run(lm, toy, out)
    assert _numbers(again) == _numbers(full)


def IEResultFile(run_dir):
    d = json.loads((run_dir / "result.json").read_text())
    d["metadata"].pop("timing_s")
    return d


def test_other_arguments_into_a_run_directory_are_refused(lm, toy, tmp_path):
    out = tmp_path / "run"
    _run(lm, toy, out)
    with pytest.raises(ValueError, match=r"holds another run \(differs in estimator: .*0\.5.*0\.7"):
        _run(lm, toy, out, sigma=[0.7])
    with pytest.raises(ValueError, match="holds another run .*micro"):
        _run(lm, toy, out, micro="in_context")
    other = data.TokenData(toy.token_ids[::-1].copy(), "toy", "icl", "toy")
    with pytest.raises(ValueError, match="holds another run .*data"):
        _run(lm, other, out)
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no ie_jax run"):
        _run(lm, toy, tmp_path / "stuff")


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    path = fileio.atomic_write_text(tmp_path / "a" / "x.txt", "one")
    fileio.atomic_write_text(path, "two")
    assert path.read_text() == "two" and os.listdir(path.parent) == ["x.txt"]
    with pytest.raises(TypeError):
        fileio.atomic_write_json(path, {"bad": object()})  # fails before anything is written
    assert path.read_text() == "two" and os.listdir(path.parent) == ["x.txt"]
    arr = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(np.load(fileio.atomic_save_npy(tmp_path / "s.npy", arr)), arr)


def test_resumed_with_another_chunk_size_keeps_the_runs_own(lm, toy, tmp_path):
    full = _run(lm, toy, tmp_path / "full")

    def kill_after_two(index, n_chunks):
        if index == 1:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        _run(lm, toy, out, on_chunk=kill_after_two)  # 6 of 12 problems done, in chunks of 3
    seen = []
    resumed = _run(lm, toy, out, chunk_size=5, on_chunk=lambda i, n: seen.append((i, n)))
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4)]  # a started run keeps its chunk size (and its programs)
    assert _numbers(resumed) == _numbers(full)


_COUNT_COMPILES = """
import json, sys
import numpy as np
from ie_jax.ie import data
from ie_jax.ie import measure as sweep
sweep.enable_compilation_cache()  # before anything compiles, as the CLI does
import ie_jax
from ie_jax.models import random_model

class Killed(Exception):
    pass

def kill_after_two(index, n_chunks):
    if sys.argv[1] == "kill" and index == 1:
        raise Killed

lm = random_model(json.loads(sys.argv[2]), seed=3)
ids = np.random.default_rng(0).integers(0, 8, (60, 3)).astype(np.int32)
try:
    ie_jax.measure(lm, data.TokenData(ids, "toy", "icl", "toy"), out=sys.argv[3], estimator="noise", sigma=[0.5],
                   n_mc=32, chunk_size=3, on_chunk=kill_after_two)
except Killed:
    pass
clock = sweep._CompileSeconds
print(json.dumps({"compiles": clock.compiles, "cache_hits": clock.cache_hits}))
"""


@pytest.mark.slow
def test_resumed_run_with_a_warm_cache_does_not_recompile(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "IE_JAX_COMPILATION_CACHE": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
    repo = str(pathlib.Path(__file__).resolve().parents[2])  # this checkout's ie_jax, not an installed one
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
    runs = []
    for mode in ("kill", "resume"):
        done = subprocess.run([sys.executable, "-c", _COUNT_COMPILES, mode, json.dumps(TINY), str(tmp_path / "run")],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    killed, resumed = runs
    assert killed["compiles"] > 0 and killed["cache_hits"] == 0  # a cold cache: everything compiled
    assert (tmp_path / "run" / "result.json").exists()
    # the resumed run captures again and estimates the 2 remaining chunks: every program comes from the cache
    assert resumed["compiles"] > 0 and resumed["cache_hits"] == resumed["compiles"]
