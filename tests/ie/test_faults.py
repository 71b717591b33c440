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
from ie_jax.ie import store
from ie_jax.cli import main
from ie_jax.models import random_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
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
    from ie_jax.ie.store import RunStore
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


@pytest.mark.slow
def test_concurrent_starts_exactly_one_accepted(tmp_path):
    for trial in range(4):
        out = tmp_path / f"run{trial}"
        start = time.time() + 1.5  # both wait for the same instant
        procs = [_python(CLAIM, out, tag, start, wait=False) for tag in ("a", "b")]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert sum(o.startswith("accepted") for o in outputs) == 1, outputs
        refused = next(o for o in outputs if o.startswith("refused"))
        # the holder's pid is named once its lock file is written; a start racing that write says "another process"
        assert "in use by another ie-jax run (" in refused or "holds another run" in refused
        held = json.loads((out / "run.json").read_text())
        assert held["run"] in ("a", "b")


def test_lock_of_a_live_run_and_stale_lock_of_a_dead_one(tmp_path):
    out = tmp_path / "run"
    holder = _python("""
        import sys, time
        from ie_jax.ie.store import RunStore
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


@pytest.mark.slow
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
    from ie_jax.ie import variables

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
    config.write_text('{"model_type": "llama",')
    rc = main(["measure", "--model", f"random:{config}", "--data", "gaussian", "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"{config} is damaged (truncated or not JSON" in err and "config.json" in err


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


# ---- numbers: huge and tiny scales give the right answer or a clear error ----

FAST_ONE_CRITIC = dict(steps=150, batch_size=256, convergence_check=False, critic_check=None, gaussian_check=False)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 2))
    return x, x + 0.5 * rng.standard_normal((1000, 2))  # I = 2 x 0.5 ln(1 + 4) = 1.61 nats


@pytest.mark.slow
def test_neural_estimate_is_scale_safe(pair):
    from ie_jax import mi

    x, y = pair
    # zscore: the float32 std of 1e18 overflowed (MI 0, "reliable"); 1e-30 underflows; x + 1e9 loses x in
    # float32; rank: a float64 1e40 became inf in the cast
    for standardize, scales in (("zscore", (1e18, 1e-30)), ("rank", (1e40,))):
        ref = mi.estimate(x, y, standardize=standardize, **FAST_ONE_CRITIC)
        assert 0.5 < ref.value < 1.8  # the true 1.61 nats, as far as 150 steps get
        for scale in scales:
            est = mi.estimate(x * scale, y * scale, standardize=standardize, **FAST_ONE_CRITIC)
            assert est.value == pytest.approx(ref.value, abs=1e-5), (standardize, scale)
    shifted = mi.estimate(x + 1e9, y, standardize="zscore", **FAST_ONE_CRITIC)
    assert shifted.value == pytest.approx(ref.value, abs=0.1)
    for scale, words in ((1e30, "holds values up to 3.9e+30: their squares overflow"),
                         (1e40, "beyond float32's range (3.4e+38)"), (1e-30, "underflow")):
        with pytest.raises(ValueError, match=rf"x column 0 .*{re_escape(words)}.*standardize='zscore' or 'rank'"):
            mi.estimate(x * scale, y, standardize="none", **FAST_ONE_CRITIC)
    with pytest.raises(ValueError, match=r"y has no columns \(shape \(1000, 0\)\)"):
        mi.estimate(x, y[:, :0], **FAST_ONE_CRITIC)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        mi.estimate(np.where(x > 3, np.inf, x), y, **FAST_ONE_CRITIC)


def re_escape(text):
    import re

    return re.escape(text)


def test_noise_gaussian_and_discrete_estimates_are_scale_safe(pair):
    from ie_jax.mi.discrete import exact_discrete_mi
    from ie_jax.mi.gaussian import gaussian_mi
    from ie_jax.mi.noise import noise_mi

    x, y = pair
    ref = noise_mi(x, y, sigma=0.3, n_mc=64)
    for sx, sy in ((1e30, 1e30), (1e-30, 1.0), (1e40, 1e-40)):
        est = noise_mi(x * sx, y * sy, sigma=0.3, n_mc=64)
        assert np.isfinite(est.value) and est.value == pytest.approx(ref.value, abs=1e-4), (sx, sy)
    with pytest.raises(ValueError, match="x column 0 holds values up to .*normaliser='centred_std'"):
        noise_mi(x * 1e30, y, sigma=0.3, n_mc=64, normaliser="none")
    exact = gaussian_mi(x, y)
    assert gaussian_mi(x * 1e200, y * 1e-200) == pytest.approx(exact, rel=1e-9)
    for fn in (lambda a, b: noise_mi(a, b, sigma=0.3), gaussian_mi, exact_discrete_mi):
        with pytest.raises(ValueError, match=r"x has no columns"):
            fn(x[:, :0], y)
    labels = np.repeat(np.arange(4.0), 25)[:, None]
    assert exact_discrete_mi(labels * 1e40, labels).value == pytest.approx(np.log(4))


def test_prepare_leaves_ordinary_data_untouched_and_rescales_exactly():
    from ie_jax.mi import inputs

    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 50, 4)).astype(np.float32) * 100
    assert inputs.prepare(a, "x", rank=3, invariance="affine") is a
    big = a.astype(np.float64) * 2.0**70
    out = inputs.prepare(big, "x", rank=3, invariance="affine")
    assert out.dtype == np.float32 and np.isfinite(out).all()
    # per column: an increasing affine map of the input (ranks and correlations kept)
    for p in range(3):
        for j in range(4):
            assert (np.argsort(out[p, :, j], kind="stable") == np.argsort(a[p, :, j], kind="stable")).all()
            assert np.corrcoef(out[p, :, j], a[p, :, j])[0, 1] > 1 - 1e-6
    scaled = inputs.prepare(big, "x", rank=3, invariance="scale", dtype=np.float64)
    ratios = (scaled - scaled.mean(axis=1, keepdims=True)) / (a - a.mean(axis=1, keepdims=True))
    assert np.allclose(ratios, ratios[:, :1, :1], rtol=1e-5)  # one scale per problem, all columns


def test_prepare_keeps_a_safe_device_array_on_the_device_and_checks_an_unsafe_one():
    import jax
    import jax.numpy as jnp

    from ie_jax.mi import inputs

    a = np.random.default_rng(2).standard_normal((2, 40, 3)).astype(np.float32)
    on_device = jnp.asarray(a)
    out = inputs.prepare(on_device, "x", rank=3, invariance="affine")
    assert isinstance(out, jax.Array) and out is on_device  # no trip to the host
    bad = on_device.at[1, 5, 2].set(jnp.nan)
    with pytest.raises(ValueError, match=r"x contains NaN or inf in problem 1"):
        inputs.prepare(bad, "x", rank=3, invariance="affine")
    big = on_device * 2.0**70  # float32 holds it, its squares do not: rescaled as on the host path
    np.testing.assert_array_equal(inputs.prepare(big, "x", rank=3, invariance="affine"),
                                  inputs.prepare(np.asarray(big), "x", rank=3, invariance="affine"))


# ---- no interval, no word ----


@pytest.mark.slow
def test_missing_interval_is_a_flag_with_a_note_naming_the_n_that_gives_one(pair):
    from ie_jax import mi
    from ie_jax.ie.result import layer_flags
    from ie_jax.mi.estimate import _interval_note
    from ie_jax.mi.protocols import resolve
    from ie_jax.plan import ACCELERATOR_DEFAULTS

    x, y = pair
    small = dict(steps=30, batch_size=16, eval_every=10, convergence_check=False, critic_check=None)
    one = mi.estimate(x[:100], y[:100], **small)  # 20 held-out pairs: one batch of 16, one value
    d = one.diagnostics
    assert np.isnan(one.stderr) and d["no_interval"] and "no confidence interval" in d["note"]
    need = int(d["note"].split("use N >= ")[1].split()[0])
    # round(0.3 x 212) = 64 held-out pairs: 4 batches of 16; one validates, one selects the estimator, 2 values
    assert need == 212
    enough = mi.estimate(x[:need], y[:need], **small)
    assert np.isfinite(enough.stderr) and not enough.diagnostics["no_interval"]
    assert "no_interval" in layer_flags(d, [enough.diagnostics], 0.0, "nats")["flags"]
    assert "no_interval" not in layer_flags(enough.diagnostics, [enough.diagnostics], 0.0, "nats")["flags"]
    # The CLI default on an accelerator gives the fast protocol a CI with one seed.
    cfg, options = resolve("fast", {})
    n = ACCELERATOR_DEFAULTS["samples"]
    note = _interval_note(cfg, "heldout", 2048, 410, 1, options["test_fraction"])
    assert int(note.split("use N >= ")[1].split()[0]) <= n
