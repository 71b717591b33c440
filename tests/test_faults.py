"""Fault injection: killed runs, concurrent starts, damaged and stray files, read-only and file-valued --out,
huge and tiny scales. Each case ends in the right answer or one line naming the problem and the fix, and no
finished result changes."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ie_jax
from ie_jax import store
from ie_jax.cli import main
from ie_jax.models import random_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}
# Gaussian closed form on Gaussian states: 2 layers x (3 positions + 3 tokens) = 12 problems, 1 per chunk.
RUN = dict(data="gaussian", n_samples=40, seq_len=3, estimator="gaussian", chunk_size=1)


def _python(code: str, *args, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def lm():
    return random_model(TINY, seed=1)


@pytest.fixture(scope="module")
def finished(lm, tmp_path_factory):
    """A finished run directory and the bytes of its result.json."""
    out = tmp_path_factory.mktemp("finished") / "run"
    ie_jax.measure(lm, out=out, **RUN)
    return out, (out / "result.json").read_bytes()


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _numbers(run_dir) -> dict:
    d = json.loads((pathlib.Path(run_dir) / "result.json").read_text())
    return d["estimates"]


# ---- the run directory: lock, exclusive create, stale locks ----

CLAIM = """
    import sys, time
    from ie_jax.store import RunStore
    out, tag, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    while time.time() < start:
        pass
    try:
        s = RunStore(out, {"run": tag})
    except ValueError as e:
        print("refused:", e)
    else:
        print("accepted")
        time.sleep(0.3)
        s.close()
"""


def test_concurrent_starts_exactly_one_accepted(tmp_path):
    for trial in range(4):
        out = tmp_path / f"run{trial}"
        start = time.time() + 1.5  # both wait for the same instant
        procs = [_python(CLAIM, out, tag, start, wait=False) for tag in ("a", "b")]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert sum(o.startswith("accepted") for o in outputs) == 1, outputs
        refused = next(o for o in outputs if o.startswith("refused"))
        assert "in use by another ie-jax run (pid" in refused or "holds another run" in refused
        held = json.loads((out / "run.json").read_text())
        assert held["run"] in ("a", "b")


def test_lock_of_a_live_run_and_stale_lock_of_a_dead_one(tmp_path):
    out = tmp_path / "run"
    holder = _python("""
        import sys, time
        from ie_jax.store import RunStore
        s = RunStore(sys.argv[1], {"run": 1})
        print("holding", flush=True)
        time.sleep(60)
    """, out, wait=False)
    assert holder.stdout.readline().strip() == "holding"
    with pytest.raises(ValueError, match=rf"in use by another ie-jax run \(pid {holder.pid} on .*\): wait for it"):
        store.RunStore(out, {"run": 1})
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with pytest.warns(UserWarning, match=rf"previous run \(pid {holder.pid} on .*\) stopped before finishing"):
        s = store.RunStore(out, {"run": 1})
    s.close()


class Killed(Exception):
    pass


def test_killed_runs_resume_to_the_uninterrupted_result(lm, finished, tmp_path):
    """Runs stopped at random chunks (an exception in-process, SIGKILL of `ie-jax measure`) resume to the
    uninterrupted numbers."""
    ref, ref_bytes = finished
    rng = np.random.default_rng(0)
    for trial in range(2):
        out = tmp_path / f"stopped{trial}"
        stop_at = int(rng.integers(0, 11))

        def stop(index, n_chunks):
            if index == stop_at:
                raise Killed

        with pytest.raises(Killed):
            ie_jax.measure(lm, out=out, on_chunk=stop, **RUN)
        ie_jax.measure(lm, out=out, **RUN)
        assert _numbers(out) == _numbers(ref)

    from ie_jax.cli import load_model_spec

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    code = """
        import sys
        from ie_jax.cli import main
        sys.exit(main(["measure", "--model", "random:" + sys.argv[1], "--data", "gaussian", "--samples", "40",
                       "--seq-len", "3", "--estimator", "gaussian", "--chunk-size", "1", "--out", sys.argv[2]]))
    """
    out = tmp_path / "killed"
    proc = _python(code, config, out, wait=False)
    target, deadline = int(rng.integers(1, 9)), time.time() + 100
    while time.time() < deadline and proc.poll() is None:  # SIGKILL once `target` of 12 chunks are written
        chunks = out / "chunks"
        if chunks.is_dir() and len(list(chunks.glob("*.json"))) >= target:
            break
        time.sleep(0.005)
    proc.kill()
    proc.communicate()
    cli_lm = load_model_spec(f"random:{config}")  # the same model the CLI built
    uninterrupted = ie_jax.measure(cli_lm, out=tmp_path / "uninterrupted", **RUN)
    if (out / "result.json").exists():  # the run won the race against the kill
        resumed = ie_jax.measure(cli_lm, out=out, **RUN)
    else:
        with pytest.warns(UserWarning, match=rf"previous run \(pid {proc.pid} on .*\) stopped before finishing"):
            resumed = ie_jax.measure(cli_lm, out=out, **RUN)
    assert _numbers(out) == _numbers(tmp_path / "uninterrupted")
    np.testing.assert_array_equal(resumed.ie, uninterrupted.ie)
    assert not list(out.rglob("*.tmp")) and (ref / "result.json").read_bytes() == ref_bytes


# ---- damaged and stray files ----


def test_truncated_chunk_is_named_then_recomputed(lm, finished, tmp_path):
    ref, ref_bytes = finished
    out = _copy(ref, tmp_path / "run")
    (out / "result.json").unlink()
    chunk = out / "chunks" / "00003.json"
    chunk.write_text(chunk.read_text()[:-40])
    with pytest.raises(ValueError, match=rf"{chunk} is damaged \(truncated or not JSON: .*\): delete {chunk}"):
        ie_jax.measure(lm, out=out, **RUN)
    chunk.unlink()  # as the message says
    ie_jax.measure(lm, out=out, **RUN)
    assert _numbers(out) == _numbers(ref)
    assert (ref / "result.json").read_bytes() == ref_bytes


def test_chunk_with_a_missing_key_is_named(lm, finished, tmp_path):
    out = _copy(finished[0], tmp_path / "run")
    (out / "result.json").unlink()
    chunk = out / "chunks" / "00002.json"
    payload = json.loads(chunk.read_text())
    del payload["estimates"][0][0]["value"]
    chunk.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=rf"{chunk} is damaged \(estimate missing key 'value'\): delete {chunk}"):
        ie_jax.measure(lm, out=out, **RUN)
    payload.pop("estimates")
    chunk.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=rf"{chunk} is damaged \(no estimates\)"):
        ie_jax.measure(lm, out=out, **RUN)


def test_truncated_result_json_is_named_then_rebuilt(lm, finished, tmp_path):
    ref, _ = finished
    out = _copy(ref, tmp_path / "run")
    result = out / "result.json"
    result.write_text(result.read_text()[:500])
    with pytest.raises(ValueError, match=rf"{result} is damaged \(truncated .*\): delete {result}"):
        ie_jax.measure(lm, out=out, **RUN)
    result.unlink()
    ie_jax.measure(lm, out=out, **RUN)
    assert _numbers(out) == _numbers(ref)


def test_stray_files_are_ignored_and_chunk_size_does_not_matter(lm, finished, tmp_path):
    ref, _ = finished
    out = _copy(ref, tmp_path / "run")
    (out / "chunks" / "00001 (copy).json").write_text("{not json")
    (out / "chunks" / "notes.txt").write_text("mine")
    (out / "result.json").unlink()
    ie_jax.measure(lm, out=out, **{**RUN, "chunk_size": 5})  # a started run keeps its chunk size of 1
    assert _numbers(out) == _numbers(ref)
    before = (out / "result.json").read_bytes()
    ie_jax.measure(lm, out=out, **{**RUN, "chunk_size": 7})  # a finished run is not refused either
    assert (out / "result.json").read_bytes() == before


def test_finished_run_reruns_without_capture(lm, finished, tmp_path, monkeypatch):
    out = _copy(finished[0], tmp_path / "run")
    from ie_jax import variables

    def no_capture(*a, **k):
        raise AssertionError("a finished run must not capture states again")

    monkeypatch.setattr(variables, "extract", no_capture)
    again = ie_jax.measure(lm, out=out, **RUN)
    assert json.loads(again.to_json())["estimates"] == _numbers(finished[0])


# ---- the CLI: one line, rc 2 ----


def test_cli_errors_on_damaged_files_are_one_line(tmp_path, capsys, finished):
    out = _copy(finished[0], tmp_path / "run")
    (out / "result.json").write_text('{"format": ')
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{out / 'result.json'} is damaged" in err and "delete" in err
    binary = tmp_path / "corpus.txt"
    binary.write_bytes(b"\xff\xfe\x00 not text \x81" * 10)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    rc = main(["measure", "--model", f"random:{config}", "--data", f"text:{binary}", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and f"{binary} is not UTF-8 text" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="--samples must be a whole number"):
        main(["measure", "--samples", "0", "--out", str(tmp_path / "r"), "--debug"])


def test_report_lists_unfinished_runs(finished, tmp_path, capsys):
    parent = tmp_path / "runs"
    _copy(finished[0], parent / "done")
    unfinished = _copy(finished[0], parent / "stopped")
    (unfinished / "result.json").unlink()
    assert main(["report", str(parent)]) == 0
    printed = capsys.readouterr().out
    assert f"unfinished run (no result.json; rerun its ie-jax measure command to resume): {unfinished}" in printed
    page = (parent / "report.html").read_text()
    assert "<h2>done</h2>" in page and "Unfinished runs" in page and "<li>stopped</li>" in page
    (parent / "done" / "result.json").unlink()
    assert main(["report", str(parent)]) == 2
    assert "2 unfinished" in capsys.readouterr().err
