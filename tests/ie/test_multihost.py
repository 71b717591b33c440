"""`ie-jax measure` as 2 processes (2 fake CPU devices each, gloo collectives, one 4-device global mesh), killed
after its first chunk (one process killed: the other stops with a clear error) and resumed, gives the numbers of
one process with 4 devices and one result.json; states captured sharded over sequences on both processes' devices
are resharded to problems on the devices; start-up arguments are checked before any connection.

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

ROOT = pathlib.Path(__file__).resolve().parents[2]
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


@pytest.mark.slow
def test_two_processes_killed_and_resumed_give_the_one_process_numbers(model, one_process, tmp_path):
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
    # Our message when a collective is cut off; JAX's own when the heartbeat timeout strikes first.
    assert ("error: another process of this 2-process run failed or stopped" in log
            or "This most likely indicates that another task died" in log), log[-3000:]
    assert not (out / "result.json").exists()
    finished = sorted(p.name for p in (out / "chunks").glob("*.json"))
    assert finished == ["00000.json"]
    written = {name: (out / "chunks" / name).read_text() for name in finished}

    logs = _run(model, out, 2, 2)
    assert {name: (out / "chunks" / name).read_text() for name in finished} == written  # kept, not recomputed
    assert "results:" in logs[0] and "results:" not in logs[1]  # process 0 alone reports
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "chunks/00000.json", "chunks/00001.json", "result.json", "run.json"]
    assert len(json.loads((out / "result.json").read_text())["metadata"]["devices"]) == 4  # 2 processes x 2
    # Every chunk was computed by 2 processes (one before the kill, one after): the numbers of 1 process x 4 devices.
    two = _estimates(out)
    assert np.isfinite(two).all() and two.shape == one_process.shape
    np.testing.assert_allclose(two, one_process, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_states_captured_across_processes_reshard_to_problems(tmp_path):
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    workers = [subprocess.Popen([sys.executable, __file__, f"127.0.0.1:{port}", str(i)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = _finish(workers)
    assert all("resharded states match" in log for log in logs), logs[0][-2000:]


def _reshard_worker(coordinator: str, process_id: int) -> None:
    """One of 2 processes: capture sharded over all 4 devices, reshard to problems, compare with a local capture."""
    from ie_jax import distributed

    distributed.initialize(coordinator, 2, process_id, heartbeat_timeout_s=20)
    from ie_jax import sharding
    from ie_jax.models import capture, random_model

    lm = random_model(TINY, seed=3)
    ids = np.random.default_rng(0).integers(0, TINY["vocab_size"], (10, 3)).astype(np.int32)  # 10: pads to 12
    mesh = sharding.make_mesh()
    assert mesh.devices.size == 4
    cap = capture(lm, ids, mesh=mesh)
    assert not cap.block_input.is_fully_addressable  # the states live on both processes' devices
    x, y = distributed.context_problems(cap.block_input, cap.block_output, mesh)
    local = capture(lm, ids)  # the same capture by this process alone, on one device
    want = [np.asarray(a).transpose(0, 2, 1, 3).reshape(-1, 10, TINY["hidden_size"])
            for a in (local.block_input, local.block_output)]
    want = [np.concatenate([w, w[-1:].repeat(2, axis=0)]) for w in want]  # 6 problems pad to 8
    for got, expected in zip((x, y), want):
        assert got.shape == expected.shape and got.sharding.spec == sharding.problem_sharding(mesh).spec
        for shard in got.addressable_shards:  # this process's devices hold whole problems: all 10 sequences
            assert shard.data.shape[1:] == (10, TINY["hidden_size"])
            np.testing.assert_allclose(np.asarray(shard.data), expected[shard.index], atol=1e-5)
        np.testing.assert_allclose(distributed.to_host({"x": got})["x"], expected, atol=1e-5)
    print("resharded states match")


if __name__ == "__main__":
    _reshard_worker(sys.argv[1], int(sys.argv[2]))


def test_start_up_arguments_are_checked_before_any_connection(tmp_path, capsys):
    from ie_jax import distributed
    from ie_jax.cli import main

    with pytest.raises(ValueError, match="together"):
        distributed.initialize("127.0.0.1:1234", None, 0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        distributed.initialize("no-port", 2, 0)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        distributed.initialize("127.0.0.1:1234", 2, 2)
    assert distributed.initialize() == 1  # no cluster here: one process, nothing joined
    assert distributed.initialize("127.0.0.1:1234", 1, 0) == 1
    assert distributed.broadcast_json({"chunks": [0, 2], "nan": None}) == {"chunks": [0, 2], "nan": None}
    assert main(["measure", "--model", "random:gpt2", "--num-processes", "2", "--out", str(tmp_path / "r")]) == 2
    assert "--coordinator HOST:PORT, --num-processes N and --process-id I together" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
