"""Chunk planning (ie_jax.mi.chunks): the planned peak bounds the compiled programs' own; a run that cannot fit
is refused before it starts; a chunk that runs out of memory mid-run is halved and every problem still gets its
estimate once."""

import dataclasses
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ie_jax
from ie_jax import sharding
from ie_jax.ie import measure as sweep
from ie_jax.mi import chunks, discrete, inputs, noise
from ie_jax.mi.protocols import resolve

estimate_module = importlib.import_module("ie_jax.mi.estimate")  # `ie_jax.mi.estimate` is also the function
S = jax.ShapeDtypeStruct
MiB = 2**20


# --- The planned peak bounds the compiled one -------------------------------------------------------------

def neural_chunk_peak(P, n, dx, dy, *, protocol="fast", seeds=(0,), accelerator=True, **overrides):
    """Compiled peak of one chunk of `estimate_batch` (every program it runs, shapes only). accelerator: trace
    the programs as a GPU runs them (the Gaussian critic vmapped over problems rather than one at a time)."""
    cfg, options = resolve(protocol, overrides)
    run = estimate_module.chunk_program(cfg, options, n, 0, seeds, sharding.make_mesh(1))
    with pytest.MonkeyPatch.context() as patch:
        if accelerator:
            patch.setattr(jax, "default_backend", lambda: "gpu")
        return chunks.compiled_peak(run, S((P, n, dx), jnp.float32), S((P, n, dy), jnp.float32))


def noise_peak(P, n, dx, dy, *, n_sigmas=2, n_mc=noise.N_MC, chunk=2048, dtype="float32"):
    """Compiled peak of `noise_mi_batch`'s device programs, in its order, at the largest shapes its data
    can give (every state distinct)."""
    fd = jnp.float64 if dtype == "float64" else jnp.float32
    c = min(chunk, noise._round_up(n, 8))
    k = noise._round_up(n, c)

    def run(x, y, ix, vx, iy, vy, lwx, lwy, jx, jy, lwxy, anchors, inv_x, inv_y, n_samples, zx, zy):
        for a in (x, y):
            inputs._device_stats(a)
            proj = np.zeros((a.shape[2], min(a.shape[2], discrete._PROJECTION_DIMS)), np.float32)
            discrete._screen(a, proj, 1e-4, neighbours=min(discrete._NEIGHBOURS, n - 1))
            with jax.enable_x64(True):
                discrete._centred_scales(a)
        with jax.enable_x64(True):
            noise._scales(x), noise._scales(y)
            xs = noise._centred_rows(x, ix, vx, dtype=np.dtype(fd))
            ys = noise._centred_rows(y, iy, vy, dtype=np.dtype(fd))
        with jax.enable_x64(dtype == "float64"):
            return noise._batch_draw_values(xs, ys, lwx, lwy, jx, jy, lwxy, anchors, inv_x, inv_y, n_samples, zx, zy,
                                            chunk=c)

    i32 = jnp.int32
    shapes = [S((P, n, dx), jnp.float32), S((P, n, dy), jnp.float32), S((P, k), i32), S((P, k), bool),
              S((P, k), i32), S((P, k), bool), S((P, k), fd), S((P, k), fd), S((P, k), i32), S((P, k), i32),
              S((P, k), fd), S((P, n_mc), i32), S((P, n_sigmas), fd), S((P, n_sigmas), fd), S((P,), fd),
              S((n_mc, dx), fd), S((n_mc, dy), fd)]
    with jax.enable_x64(dtype == "float64"):
        return chunks.compiled_peak(run, *shapes)


def _neural_case(P, n, dx, dy, protocol="fast", seeds=(0,), **overrides):
    cfg, options = resolve(protocol, overrides)
    planned = P * estimate_module.bytes_per_problem(n, dx, dy, protocol=protocol, seeds=seeds, **overrides)
    return planned, neural_chunk_peak(P, n, dx, dy, protocol=protocol, seeds=seeds, **overrides)


def _show(peak) -> str:
    return "; ".join(f"{s.name} {s.peak_bytes / MiB:.1f}" for s in peak.steps if s.temp_bytes)


@pytest.mark.slow
def test_planned_peak_bounds_the_compiled_peak_of_the_default_chunk():
    # the fast protocol with its selection and every check: prepare, 3 critic sets, Gaussian critic, readout,
    # copula, radial KSG; 2 problems so that the chunk's arrays scale with the problem axis
    planned, peak = _neural_case(2, 3000, 12, 10, steps=20, eval_every=10)
    names = {s.name for s in peak.steps}
    assert {"prepare", "train_critics", "_heldout_batch", "_readout_stats", "_copula_batch",
            "_nearest_neighbour_batch"} <= names, names
    assert peak.peak_bytes <= planned <= 4 * peak.peak_bytes, (planned / MiB, _show(peak))


@pytest.mark.slow
@pytest.mark.parametrize("case", [
    dict(P=1, n=3000, dx=1, dy=2),  # KSG on x and y too (dx + dy <= 6)
    dict(P=3, n=1500, dx=24, dy=8, seeds=(0, 1)),  # several seeds
    dict(P=2, n=2500, dx=64, dy=64, select=False, gaussian_check=False, standardize="zscore"),
    dict(P=2, n=2000, dx=16, dy=16, dtype="bfloat16", critic_check=None),
    dict(P=2, n=1200, dx=32, dy=32, protocol="paper"),  # full batch: the critics' activations over all N
    dict(P=1, n=6000, dx=256, dy=256),  # wide: the float64 [d, d] algebra of the Gaussian critic and copula
])
@pytest.mark.slow
def test_planned_peak_bounds_the_compiled_peak_over_a_grid(case):
    case = dict(case)
    P, n, dx, dy = (case.pop(k) for k in ("P", "n", "dx", "dy"))
    short = dict(steps=20, eval_every=10) if case.get("protocol") != "paper" else dict(steps=20)
    planned, peak = _neural_case(P, n, dx, dy, **short, **case)
    assert peak.peak_bytes <= planned, (planned / MiB, peak.peak_bytes / MiB, _show(peak))


@pytest.mark.parametrize("case", [dict(P=1, n=3000, d=8, sigma=None),  # the default: 16 sigmas, N_MC draws
                                  dict(P=2, n=2500, d=48, sigma=[0.3, 1.0], n_mc=64),
                                  dict(P=2, n=900, d=16, sigma=[1.0], n_mc=64, dtype="float64", chunk=256)])
def test_noise_estimator_planned_peak_bounds_the_compiled_peak(case):
    case = dict(case)
    P, n, d = (case.pop(k) for k in ("P", "n", "d"))
    est = ie_jax.mi.get_estimator("noise", **case)
    sizes = {k: case[k] for k in ("n_mc", "chunk", "dtype") if k in case}
    peak = noise_peak(P, n, d, d, n_sigmas=len(est.sigmas), **sizes)  # n_mc: the estimator's default unless given
    planned = P * est.bytes_per_problem(n, d, d)
    assert peak.peak_bytes <= planned, (planned / MiB, _show(peak))


def test_sweep_cost_counts_its_own_steps():
    # the distinct-state screen of a chunk's x (`ie_jax.mi.ceilings.state_counts`) beside the chunk's inputs
    P, n, d = 2, 4000, 32
    proj = np.zeros((d, min(d, discrete._PROJECTION_DIMS)), np.float32)
    peak = chunks.compiled_peak(lambda x: discrete._screen(x, proj, 1e-4, neighbours=discrete._NEIGHBOURS),
                                S((P, n, d), jnp.float32))
    assert peak.peak_bytes <= P * (4 * n * d + discrete.screen_bytes(n, d))
    est = ie_jax.mi.get_estimator("gaussian")  # host estimator: the sweep's own steps set its chunk's cost
    assert sweep.chunk_bytes_per_problem(est, n, d, d) >= 4 * n * 2 * d + discrete.screen_bytes(n, d)


# --- Plans for GPU-sized runs -----------------------------------------------------------------------------

GPT2 = {"gpt2": dict(d=768, layers=12), "gpt2-medium": dict(d=1024, layers=24)}
ESTIMATORS = {"default": (None, None), "fast": ("fast", None)}  # measure()'s default (noise), --protocol fast


def gpt2_plan(model: str, device_gib: float, estimator: str = "default", n: int = 20_000, seq_len: int = 8,
              weights_gib: float = 1.5):
    """The plan of `ie-jax measure --model random:MODEL --data gaussian --samples N` (`sweep.plan_chunks`) on one
    device where JAX may allocate device_gib, the model's weights in use: Gaussian states, isolated tokens."""
    spec = GPT2[model]
    d, layers = spec["d"], spec["layers"]
    est = sweep.make_estimator(*ESTIMATORS[estimator], None, (0,), False, {})
    states = 2 * 4 * layers * d * (n * seq_len + n * seq_len)
    budget = int(chunks.DEFAULT_FRACTION * (device_gib - weights_gib) * 2**30)  # `default_memory_budget` there
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunks, "device_memory_limit", lambda: int(device_gib * 2**30))
        patch.setattr(est, "n_devices", lambda n_problems: 1)
        plan = sweep.plan_chunks(est, layers * 2 * seq_len, n, d, d, states, budget)
    return plan, est


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("model", list(GPT2))
@pytest.mark.parametrize("device_gib", [78, 40])
def test_gpt2_runs_fit_a_78_and_a_40_gib_device(model, device_gib, estimator):
    plan, est = gpt2_plan(model, device_gib, estimator)
    assert plan.chunk_size >= 8
    peak = chunks.peak_bytes(plan.chunk_size, plan.bytes_per_problem, reserved=plan.reserved)
    assert peak <= plan.budget <= chunks.DEFAULT_FRACTION * device_gib * 2**30


@pytest.mark.slow
@pytest.mark.parametrize("model,device_gib", [("gpt2", 78), ("gpt2-medium", 40)])
def test_gpt2_default_planned_chunk_bounds_its_compiled_peak(model, device_gib):
    # the whole planned chunk of the default (noise) estimator, compiled for the CPU from shapes alone (nothing
    # allocated); the CPU's memory analysis approximates the GPU's: the budget keeps 20% of the device free
    plan, est = gpt2_plan(model, device_gib)
    d = GPT2[model]["d"]
    peak = noise_peak(plan.chunk_size, 20_000, d, d, n_sigmas=len(est.sigmas))
    assert peak.peak_bytes <= plan.chunk_size * plan.bytes_per_problem <= plan.budget - plan.reserved


@pytest.mark.slow
@pytest.mark.parametrize("model,device_gib", [("gpt2", 78), ("gpt2-medium", 40)])
def test_gpt2_fast_protocol_planned_chunk_bounds_its_compiled_peak(model, device_gib):
    plan, est = gpt2_plan(model, device_gib, "fast")
    d = GPT2[model]["d"]
    peak = neural_chunk_peak(plan.chunk_size, 20_000, d, d)
    assert peak.peak_bytes <= plan.chunk_size * plan.bytes_per_problem <= plan.budget - plan.reserved


# --- Before the run: resized or refused -------------------------------------------------------------------

def test_plan_balances_chunks_and_refuses_a_problem_larger_than_the_budget():
    assert chunks.plan(100, 10 * MiB, budget=250 * MiB) == 25
    assert chunks.plan(100, 10 * MiB, budget=240 * MiB) == 20  # at most 24: 5 equal chunks of 20, no padding
    assert chunks.plan(10, 1, budget="1GiB") == 10
    assert chunks.plan(100, 10 * MiB, budget=250 * MiB, n_devices=4) == 100
    assert chunks.plan(100, 10 * MiB, budget=250 * MiB, reserved=200 * MiB) == 5
    with pytest.raises(chunks.MemoryPlanError, match=r"one MI problem needs 0\.01 GiB .* more than the 0\.01 GiB "
                                                     r"memory budget leaves beside 0\.00 GiB kept on the device"):
        chunks.plan(10, 10 * MiB, budget=10 * MiB, reserved=MiB)
    with pytest.raises(chunks.MemoryPlanError, match="--memory-budget .* or fewer samples"):
        chunks.plan(10, 10 * MiB, budget=5 * MiB, fix="fewer samples")
    # the CPU's default budget is no limit of the machine: one problem per chunk rather than a refusal
    assert chunks.device_memory_limit() is None
    assert chunks.plan(3, 2 * chunks.default_memory_budget()) == 1
    assert chunks.parse_bytes("1.5GiB") == 3 * 2**29 and chunks.parse_bytes("512M") == 2**29
    with pytest.raises(ValueError, match="must be > 0"):
        chunks.memory_budget(0)


def test_one_default_budget_and_the_planned_chunk_reaches_the_estimator():
    assert chunks.default_memory_budget() * jax.local_device_count() <= chunks.CPU_MEMORY_BUDGET
    with chunks.planned(7):
        assert chunks.planned_chunk() == 7
    assert chunks.planned_chunk() is None
    cfg, options = resolve("fast", {})
    size = lambda: estimate_module._chunk_size(cfg, options, 20, 20_000, 768, 768, 1, 1)
    with chunks.planned(7):
        assert size() == 7  # the sweep's chunk is the estimator's chunk: planned once
    assert size() == chunks.plan(20, estimate_module.bytes_per_problem(20_000, 768, 768))


@pytest.mark.slow
def test_sweep_refuses_before_the_capture_and_lowers_a_chunk_size_that_does_not_fit(tmp_path):
    lm = ie_jax.models.random_model({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16,
                                     "intermediate_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "vocab_size": 40, "max_position_embeddings": 8, "rms_norm_eps": 1e-5,
                                     "rope_theta": 10000.0, "tie_word_embeddings": True}, seed=0)
    run = dict(data="gaussian", n_samples=64, seq_len=2, estimator="noise", sigma=[0.5], n_mc=8)
    with pytest.raises(chunks.MemoryPlanError, match=r"one MI problem \(noise sigma=0.5, N = 64, d = 16\) needs "
                                                     r".* --memory-budget .* or fewer samples \(--samples 64 now\)"):
        ie_jax.measure(lm, memory_budget="1KiB", out=tmp_path / "refused", **run)
    assert not (tmp_path / "refused" / "run.json").exists()  # refused before the run directory was claimed
    est = sweep.make_estimator("fast", "noise", [0.5], (0,), False, {"n_mc": 8})
    per_problem = sweep.chunk_bytes_per_problem(est, 64, 16, 16)
    with pytest.warns(UserWarning, match="chunk_size=8 needs .* chunks of 3 instead"):
        result = ie_jax.measure(lm, memory_budget=3 * per_problem, chunk_size=8, **run)
    assert result.metadata["chunks"]["chunk_size"] == 3 and result.metadata["chunks"]["n_chunks"] == 3


# --- Mid-run: an out-of-memory chunk is halved -------------------------------------------------------------

class _OutOfMemory(jax.errors.JaxRuntimeError):
    pass


@dataclasses.dataclass
class _Fragile(ie_jax.mi.estimators.Estimator):
    """A host estimator (the Gaussian closed form) that runs out of "device memory" above `most` problems."""

    most: int
    name = "gaussian"

    def __post_init__(self):
        self.inner, self.options, self.calls = ie_jax.mi.get_estimator("gaussian"), {}, []

    def estimate_settings(self, x, y):
        self.calls.append(len(x))
        if len(x) > self.most:
            raise _OutOfMemory(f"RESOURCE_EXHAUSTED: Out of memory while trying to allocate {len(x)}.00GiB")
        return self.inner.estimate_settings(x, y)


@pytest.mark.slow
def test_out_of_memory_halves_the_chunk_and_every_problem_gets_one_estimate(tmp_path, monkeypatch):
    lm = ie_jax.models.random_model({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 8,
                                     "intermediate_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1,
                                     "vocab_size": 40, "max_position_embeddings": 8, "rms_norm_eps": 1e-5,
                                     "rope_theta": 10000.0, "tie_word_embeddings": True}, seed=0)
    run = dict(data="gaussian", n_samples=40, seq_len=3, estimator="gaussian")  # 2 x (3 + 3) = 12 problems
    want = ie_jax.measure(lm, chunk_size=12, **run)
    fragile = _Fragile(most=3)
    monkeypatch.setattr(sweep, "make_estimator", lambda *a, **k: fragile)
    out, seen = tmp_path / "run", []

    def stop_after_two(index, n_chunks):
        seen.append((index, n_chunks))
        if index == 1:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning) as record, pytest.raises(KeyboardInterrupt):
        ie_jax.measure(lm, chunk_size=10, out=out, on_chunk=stop_after_two, **run)
    assert [str(w.message).split(" (finished")[0] for w in record] == [
        f"chunk 1 ran out of device memory (RESOURCE_EXHAUSTED: Out of memory while trying to allocate {size}.00GiB): "
        f"going on with chunks of {half} problems" for size, half in ((10, 5), (5, 3))]
    assert fragile.calls == [10, 5, 3, 3]  # 10 and 5 problems run out of memory, then chunks of 3
    assert seen == [(0, 4), (1, 4)]
    sizes = [json.loads(c.read_text())["chunk_size"] for c in sorted((out / "chunks").iterdir())]
    assert sizes == [3, 3]  # the failed chunks left nothing; the finished ones stay
    # the stopped run resumes at the halved size (the last chunk's), whatever chunk_size asks
    fragile.most, fragile.calls = 100, []
    got = ie_jax.measure(lm, chunk_size=10, out=out, **run)
    assert fragile.calls == [3, 3] and got.metadata["chunks"]["chunk_size"] == 3
    np.testing.assert_array_equal(got.select(0).ie, want.select(0).ie)
    done = [tuple(k) for c in sorted((out / "chunks").iterdir()) for k in json.loads(c.read_text())["problems"]]
    assert len(done) == len(set(done)) == 12  # every problem estimated once
    # one problem that still does not fit cannot be halved: the error stands
    fragile.most, fragile.calls = 0, []
    with pytest.raises(_OutOfMemory, match="RESOURCE_EXHAUSTED"):
        ie_jax.measure(lm, chunk_size=1, **run)
    assert fragile.calls == [1]


def test_out_of_memory_is_recognised_by_type_and_message():
    assert chunks.is_out_of_memory(_OutOfMemory("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 14.65GiB"))
    assert not chunks.is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED"))
    assert not chunks.is_out_of_memory(_OutOfMemory("INTERNAL: something else"))
