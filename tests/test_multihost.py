"""`ie-jax measure` as 2 processes (2 fake CPU devices each, gloo collectives, one 4-device global mesh) gives the
numbers of one process with 4 devices, writes one result.json, and a killed 2-process run resumes to them.

Real processes on localhost, as on several hosts: each started with the same command and its own --process-id.
A tiny random model on Gaussian inputs keeps the test's CPU time small; the sizes give 8 MI problems in 2 chunks.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}
# 2 layers x (2 positions + 2 tokens alone) = 8 problems, 4 per chunk (one per device); the neural path with a
# small critic and no extra check critics (each would add a compilation per process).
SETTINGS = ["--data", "gaussian", "--samples", "96", "--seq-len", "2", "--estimator", "neural", "--chunk-size", "4",
            "--set", "steps=30", "--set", "batch_size=32", "--set", "hidden=(32,)", "--set", "embed_dim=16",
            "--set", "eval_every=10", "--set", "convergence_check=False", "--set", "critic_check=None",
            "--set", "gaussian_check=False"]
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model: str, out: pathlib.Path, n_processes: int, devices_each: int, extra=()) -> list[subprocess.Popen]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_each}"}
    command = [sys.executable, "-m", "ie_jax.cli", "measure", "--model", model, *SETTINGS, "--out", str(out), *extra]
    if n_processes == 1:
        return [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    cluster = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", str(n_processes)]
    return [subprocess.Popen(command + cluster + ["--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for i in range(n_processes)]


def _finish(processes) -> list[str]:
    logs = []
    for i, p in enumerate(processes):
        try:
            log, _ = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for q in processes:
                q.kill()
            raise
        assert p.returncode == 0, f"process {i} failed:\n{log[-3000:]}"
        logs.append(log)
    return logs


def _run(model, out, n_processes, devices_each) -> list[str]:
    return _finish(_start(model, out, n_processes, devices_each))


def _estimates(out: pathlib.Path) -> np.ndarray:
    """Every MI estimate and IE value of a run, in a fixed order (nats)."""
    result = json.loads((out / "result.json").read_text())
    values = [e["value"] for kind in ("context", "micro") for s in result["estimates"][kind] for layer in s
              for e in layer]
    ie = [v for s in result["summary"]["settings"] for v in s["ie"]]
    return np.array(values + ie)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return f"random:{path}"


@pytest.fixture(scope="module")
def one_process(model, tmp_path_factory) -> np.ndarray:
    out = tmp_path_factory.mktemp("single") / "run"
    _run(model, out, 1, 4)
    return _estimates(out)


def test_two_processes_match_one_process_and_write_once(model, one_process, tmp_path):
    out = tmp_path / "run"
    logs = _run(model, out, 2, 2)
    assert "results:" in logs[0] and "results:" not in logs[1]  # process 0 alone reports
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "chunks/00000.json", "chunks/00001.json", "result.json", "run.json"]
    meta = json.loads((out / "result.json").read_text())["metadata"]
    assert len(meta["devices"]) == 4  # the global mesh: 2 processes x 2 devices
    two = _estimates(out)
    assert np.isfinite(two).all() and two.shape == one_process.shape
    np.testing.assert_allclose(two, one_process, rtol=0, atol=1e-5)


def test_killed_two_process_run_resumes_to_the_same_numbers(model, one_process, tmp_path):
    out = tmp_path / "run"
    processes = _start(model, out, 2, 2, extra=["--heartbeat-timeout", "10"])
    first = out / "chunks" / "00000.json"
    deadline = time.monotonic() + TIMEOUT_S
    while not first.exists():
        assert time.monotonic() < deadline and processes[0].poll() is None, "no chunk was written"
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGKILL)
    # Process 0 must not hang on its dead peer: it stops with an error (a failed collective or a missed heartbeat).
    log, _ = processes[0].communicate(timeout=TIMEOUT_S)
    processes[1].wait()
    assert processes[0].returncode != 0, f"process 0 finished although its peer died:\n{log[-2000:]}"
    assert not (out / "result.json").exists()
    finished = sorted(p.name for p in (out / "chunks").glob("*.json"))
    assert finished == ["00000.json"]
    written = {name: (out / "chunks" / name).read_text() for name in finished}

    _run(model, out, 2, 2)
    assert {name: (out / "chunks" / name).read_text() for name in finished} == written  # kept, not recomputed
    np.testing.assert_allclose(_estimates(out), one_process, rtol=0, atol=1e-5)
