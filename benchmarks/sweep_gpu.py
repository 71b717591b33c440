"""Critic-training speed on GPU: paper and fast protocols, P problems at once, 1 vs several devices.

Run (on the device machine; every section appends to one JSON file, written after each section):
  python3 benchmarks/sweep_gpu.py --out $OUT/critic_gpu.json              # JAX sections
  python3 benchmarks/sweep_gpu.py --torch-reference --out $OUT/ref.json   # PyTorch reference loop

Sections (each timed after compilation, on synthetic Gaussian pairs generated on the device):
  peak      8192^3 bf16 (and fp32) matmul, device-to-device copy: the ceilings every % refers to;
  paper     the paper protocol's critic (N pairs full batch, d = 768) for P problems: `steps` steps timed
            after warm-up, extrapolated to the protocol's 10,000 (the per-step work does not change);
  faithful  the reference's way in JAX: one critic, fp32 ("highest" matmuls), the [2N, 2d] concat input,
            a jitted step called from a host loop that reads the bound back every step;
  fast      the fast protocol at its full 2,000 steps (with its held-out evaluations);
  sweep     GPT-2-small-shaped sweep (12 layers x (8 micro + 1 macro) = 108 problems): chunks of the
            problem axis as `train_batch` runs them, from the measured per-chunk times;
  scaling   the same on a mesh over all devices (problem axis sharded), when there are several;
  api       `estimate_batch` end to end (host preparation included) for a few problems.
--torch-reference: the reference loop in PyTorch (fp32, and bf16 autocast) on the same GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import time
import traceback
from pathlib import Path

PAPER_HIDDEN = (768, 384, 192, 96, 48, 24, 12, 6, 3)
SWEEP_PROBLEMS = 12 * (8 + 1)  # GPT-2 small: 12 blocks x (8 micro tokens + 1 macro)
PAPER_STEPS = 10_000


# ---------------------------------------------------------------------------------------------------------
# FLOP and byte counts (per training step, per problem)

def paper_flops(n: int, d: int, hidden=PAPER_HIDDEN) -> dict[str, float]:
    """FLOPs of one full-batch step of the paper critic on n pairs of d-wide x and y.

    executed: what ie_jax runs. First layer: x @ W_x and y @ W_y once (2 x 2 n d h1) forward, their weight
        gradients (2 x 2 n d h1) backward, no input gradient; the other layers see 2n rows (joint +
        marginal), 2 x 2n x (a b) forward and twice that backward.
    reference_executed: the reference's [2n, 2d] concat input: 2 x 2n x 2d h1 forward + the same for the
        weight gradient, other layers as above.
    issue_convention: 6 x rows x parameters with rows = 2n (how the issue's 58/308/193 TFLOP/s were counted).
    """
    h1 = hidden[0]
    rest = sum(a * b for a, b in zip(hidden, hidden[1:] + (1,)))
    rest_flops = 3 * 2 * (2 * n) * rest
    return {
        "executed": 8 * n * d * h1 + rest_flops,
        "reference_executed": 2 * 2 * (2 * n) * (2 * d) * h1 + rest_flops,
        "issue_convention": 6 * (2 * n) * (2 * d * h1 + rest),
    }


def paper_bytes(n: int, d: int, hidden=PAPER_HIDDEN, data_bytes: int = 4) -> dict[str, float]:
    """Fewest bytes a paper-critic step moves through device memory (fp32 activations, as ie_jax keeps them).

    data: x and y read once. first_layer: hx, hy [n, h1] written and read, the [2n, h1] pre-activation
    written, read by the next matmul and read again backward, its gradient written and read (summed into
    dhx, dhy). Narrower layers are about as much again in total (384 + 192 + ... ~ h1).
    """
    h1 = hidden[0]
    data = 2 * n * d * data_bytes
    first = 4 * (2 * 2 * n * h1 + 5 * 2 * n * h1)
    rest = 4 * 5 * 2 * n * sum(hidden[1:])
    return {"data": data, "first_layer": first, "other_layers": rest, "total": data + first + rest}


def fast_flops(batch: int, d: int, hidden=(256, 256), embed: int = 64) -> float:
    """FLOPs of one fast-protocol step: two encoders on `batch` rows (fwd + bwd, no input gradient on
    the first layer) plus the [B, E] x [E, B] score matmul (fwd + 2 bwd)."""
    widths = (d,) + tuple(hidden) + (embed,)
    per_encoder = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    first = widths[0] * widths[1]
    encoders = 2 * (3 * 2 * batch * per_encoder - 2 * batch * first)
    return encoders + 3 * 2 * batch * batch * embed


# ---------------------------------------------------------------------------------------------------------
# helpers

def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def median(xs):
    return statistics.median(xs) if xs else math.nan


def write(out: Path, results: dict):
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=float) + "\n")
    tmp.replace(out)


def nvidia_smi() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unavailable"


def is_oom(err: Exception) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or "Out of memory" in text


class Budget:
    """Wall-clock guard: sections past the budget are skipped (and say so) instead of timing out."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


# ---------------------------------------------------------------------------------------------------------
# JAX sections

def jax_env():
    import jax

    dev = jax.devices()
    return {"date_utc": now(), "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": [d.device_kind for d in dev], "n_devices": len(dev), "nvidia_smi": nvidia_smi(),
            "host": platform.node(), "python": platform.python_version(),
            "default_matmul_precision": str(jax.config.jax_default_matmul_precision)}


def time_calls(fn, repeats: int, inner: int = 1) -> list[float]:
    """Seconds per call of fn (which returns device arrays), synchronised, `inner` calls per sample."""
    import jax

    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = None
        for _ in range(inner):
            out = fn()
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - start) / inner)
    return samples


def section_peak(size: int):
    """bf16 / fp32 matmul rates (size^3, random inputs rotated over 3 sets) and copy bandwidth."""
    import jax
    import jax.numpy as jnp

    out = {}
    keys = jax.random.split(jax.random.key(0), 6)
    for name, dtype, precision in [("bf16", jnp.bfloat16, None), ("fp32_default", jnp.float32, None),
                                   ("fp32_highest", jnp.float32, jax.lax.Precision.HIGHEST)]:
        mats = [jax.random.normal(k, (size, size), jnp.float32).astype(dtype) for k in keys]
        f = jax.jit(lambda a, b, p=precision: jnp.matmul(a, b, precision=p))
        jax.block_until_ready(f(mats[0], mats[1]))
        calls = [0]

        def one():
            i = calls[0] % 3
            calls[0] += 1
            return f(mats[2 * i], mats[2 * i + 1])

        inner = 20 if dtype == jnp.bfloat16 else 5
        secs = time_calls(one, repeats=5, inner=inner)
        flops = 2 * size**3
        out[name] = {"size": size, "seconds_median": median(secs), "tflops": flops / median(secs) / 1e12,
                     "samples_s": secs}
        del mats
    n = 1 << 29 if size >= 4096 else 1 << 20  # 2 GiB fp32
    a = jax.random.normal(keys[0], (n,), jnp.float32)
    copy = jax.jit(lambda v: v * 1.0001)
    jax.block_until_ready(copy(a))
    secs = time_calls(lambda: copy(a), repeats=5, inner=10)
    out["copy"] = {"bytes_moved": 8 * n, "seconds_median": median(secs), "gb_per_s": 8 * n / median(secs) / 1e9}
    return out


def make_pairs(n_problems: int, n: int, d: int, seed: int, mesh=None, dtype="float32"):
    """x, y [P, n, d] on the device(s): y = 0.1 x + noise per coordinate (MI = d/2 ln 1.01 nats)."""
    import jax
    import jax.numpy as jnp

    from ie_jax import sharding

    def gen(key):
        kx, ky = jax.random.split(key)
        x = jax.random.normal(kx, (n_problems, n, d), jnp.float32)
        return x.astype(dtype), (0.1 * x + jax.random.normal(ky, (n_problems, n, d), jnp.float32)).astype(dtype)

    shard = None if mesh is None else sharding.problem_sharding(mesh)
    return jax.jit(gen, out_shardings=None if shard is None else (shard, shard))(jax.random.key(seed))


_TRAIN_TIMES: dict = {}


def train_time(cfg, n_problems: int, n_train: int, n_test: int, d: int, mesh=None, repeats: int = 2):
    """Compile train_critics for [P, n_train, d] (+ held-out [P, n_test, d]) and time whole runs.

    Memoised: a sweep whose chunk was already measured (e.g. P = 108 in chunks of 12 after P = 12) reuses it.
    """
    key = (cfg, n_problems, n_train, n_test, d, 1 if mesh is None else mesh.devices.size)
    if key not in _TRAIN_TIMES:
        _TRAIN_TIMES[key] = _train_time(cfg, n_problems, n_train, n_test, d, mesh, repeats)
    return _TRAIN_TIMES[key]


def _train_time(cfg, n_problems, n_train, n_test, d, mesh, repeats, data_dtype="float32", critic=None):
    import jax
    import numpy as np

    from ie_jax.mi.train import train_critics

    x, y = make_pairs(n_problems, n_train, d, 1, mesh, data_dtype)
    xt, yt = make_pairs(n_problems, n_test, d, 2, mesh, data_dtype)
    keys = jax.random.split(jax.random.key(0), 1)
    eval_batch = min(int(cfg.batch_size or n_test), n_test) if n_test else 0
    start = time.perf_counter()
    compiled = train_critics.lower(cfg, x, y, xt, yt, keys, eval_batch=eval_batch, critic=critic).compile()
    compile_s = time.perf_counter() - start
    mem = None
    try:
        ma = compiled.memory_analysis()
        mem = {"temp_bytes": int(ma.temp_size_in_bytes), "argument_bytes": int(ma.argument_size_in_bytes),
               "output_bytes": int(ma.output_size_in_bytes)}
    except Exception:  # not every backend reports it
        pass
    runs, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(x, y, xt, yt, keys))
        runs.append(time.perf_counter() - start)
    values = np.asarray(out["train_values"])
    del x, y, xt, yt, out
    return {"compile_s": compile_s, "run_s": runs, "run_s_median": median(runs), "memory": mem,
            "train_value_first_nats": float(np.nanmean(values[..., 0])),
            "train_value_last_nats": float(np.nanmean(values[..., -1])),
            "nan_fraction": float(np.isnan(values).mean())}


def fit_chunk(measure, want: int, n_devices: int, record: dict):
    """Run measure(P) for P = want, halving (to a multiple of n_devices) on device OOM; returns (P, result)."""
    p = want
    while True:
        try:
            return p, measure(p)
        except Exception as err:  # noqa: BLE001 - OOM is reported by XLA as a runtime error
            if not is_oom(err) or p <= n_devices:
                raise
            record.setdefault("oom_at", []).append(p)
            p = max(n_devices, (p // 2) // n_devices * n_devices)


def paper_section(args, dtype: str, problems, mesh, n_devices: int, record: dict, budget: Budget):
    from ie_jax.mi.protocols import resolve

    cfg, _ = resolve("paper", {"steps": args.paper_steps, "dtype": dtype})
    flops = paper_flops(args.n, args.d)
    for want in problems:
        if budget.left() < 60:
            record[f"P{want}"] = {"skipped": "time budget"}
            continue
        entry = {}
        try:
            chunk, res = fit_chunk(lambda p: train_time(cfg, p, args.n, 0, args.d, mesh), min(want, args.paper_chunk * n_devices),
                                   n_devices, entry)
        except Exception as err:  # noqa: BLE001
            record[f"P{want}"] = {"error": repr(err)[:2000]}
            continue
        step_s = res["run_s_median"] / args.paper_steps
        n_chunks = math.ceil(want / chunk)
        per_step_all = n_chunks * step_s  # chunks run one after another
        executed = want * flops["executed"]
        entry.update({
            "problems": want, "chunk": chunk, "n_chunks": n_chunks, "devices": n_devices, "steps_timed": args.paper_steps,
            "chunk_run": res, "chunk_step_s": step_s,
            "steps_per_s": 1.0 / per_step_all,
            "critic_steps_per_s": want / per_step_all,
            "executed_tflops": executed / per_step_all / 1e12,
            "issue_convention_tflops": want * flops["issue_convention"] / per_step_all / 1e12,
            "extrapolated_10k_steps_s": PAPER_STEPS * per_step_all,
            "extrapolation": f"{args.paper_steps} steps timed after compilation, x {PAPER_STEPS // args.paper_steps}",
        })
        record[f"P{want}"] = entry
        print(f"paper {dtype} P={want} chunk={chunk} devices={n_devices}: {step_s * 1e3:.1f} ms/step/chunk, "
              f"{entry['executed_tflops']:.0f} TFLOP/s executed, 10k steps {entry['extrapolated_10k_steps_s']:.0f} s",
              flush=True)


def fast_section(args, problems, mesh, n_devices: int, record: dict, budget: Budget):
    from ie_jax.mi.protocols import resolve

    cfg, options = resolve("fast", {"steps": args.fast_steps})
    n_test = int(round(args.n * options["test_fraction"]))
    n_train = args.n - n_test
    for want in problems:
        if budget.left() < 45:
            record[f"P{want}"] = {"skipped": "time budget"}
            continue
        entry = {}
        # Chunks as train_batch would cut them: as few as memory allows, equal sizes, multiples of the devices.
        n_chunks = math.ceil(want / (args.fast_chunk * n_devices))
        chunk = math.ceil(math.ceil(want / n_chunks) / n_devices) * n_devices
        try:
            chunk, res = fit_chunk(lambda p: train_time(cfg, p, n_train, n_test, args.d, mesh, repeats=1), chunk, n_devices,
                                   entry)
        except Exception as err:  # noqa: BLE001
            record[f"P{want}"] = {"error": repr(err)[:2000]}
            continue
        n_chunks = math.ceil(want / chunk)
        total = n_chunks * res["run_s_median"]
        entry.update({
            "problems": want, "chunk": chunk, "n_chunks": n_chunks, "devices": n_devices, "steps": args.fast_steps,
            "n_train": n_train, "n_test": n_test, "chunk_run": res, "total_s": total,
            "critic_steps_per_s": want * args.fast_steps / total,
            "executed_tflops": want * args.fast_steps * fast_flops(cfg.batch_size, args.d) / total / 1e12,
        })
        record[f"P{want}"] = entry
        print(f"fast P={want} chunk={chunk} devices={n_devices}: {total:.1f} s for {args.fast_steps} steps "
              f"(compile {res['compile_s']:.1f} s)", flush=True)


def faithful_section(args, steps: int = 10, warmup: int = 2):
    """The reference loop's shape in JAX: one critic, fp32 highest, concat input, host loop + readback."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from ie_jax.mi.critics import xavier_normal
    from ie_jax.mi.train import paper_schedule

    n, d = args.n, args.d
    widths = (2 * d,) + PAPER_HIDDEN + (1,)
    keys = jax.random.split(jax.random.key(0), len(widths))
    params = [{"w": xavier_normal(k, a, b), "b": jnp.zeros((b,), jnp.float32)}
              for k, a, b in zip(keys, widths[:-1], widths[1:])]
    optimizer = optax.adam(paper_schedule(1e-4, PAPER_STEPS))
    opt_state = optimizer.init(params)
    x, y = make_pairs(1, n, d, 1)
    x, y = x[0], y[0]

    def loss_fn(params, perm):
        h = jnp.concatenate([jnp.concatenate([x, x], 0), jnp.concatenate([y, y[perm]], 0)], 1)
        for i, layer in enumerate(params):
            h = jnp.matmul(h, layer["w"], precision=jax.lax.Precision.HIGHEST) + layer["b"]
            if i < len(params) - 1:
                h = jnp.where(h >= 0, h, 0.01 * h)
        t = h[:, 0]
        dv = jnp.mean(t[:n]) - jnp.log(jnp.mean(jnp.exp(t[n:])))
        return -dv / math.log(2.0)

    @jax.jit
    def step(params, opt_state, perm):
        loss, grads = jax.value_and_grad(loss_fn)(params, perm)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, rng.permutation(n))
    float(loss)
    compile_s = time.perf_counter() - start
    times, infos = [], []
    for t in range(warmup + steps):
        start = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, rng.permutation(n))  # host permutation, as torch.randperm
        infos.append(-float(loss))  # the reference reads info back every step
        if t >= warmup:
            times.append(time.perf_counter() - start)
    flops = paper_flops(n, d)
    step_s = median(times)
    return {"steps_timed": steps, "step_s_median": step_s, "step_s": times, "compile_and_first_step_s": compile_s,
            "reference_executed_tflops": flops["reference_executed"] / step_s / 1e12,
            "issue_convention_tflops": flops["issue_convention"] / step_s / 1e12,
            "extrapolated_10k_steps_s": PAPER_STEPS * step_s,
            "extrapolated_sweep_108_s": SWEEP_PROBLEMS * PAPER_STEPS * step_s, "info_bits_last": infos[-1]}


def api_section(args, n_problems: int):
    """`estimate_batch(protocol="fast")` end to end on host arrays: host checks, split, standardising, transfers."""
    import jax
    import numpy as np

    import ie_jax.mi as mi

    x, y = make_pairs(n_problems, args.n, args.d, 3)
    x, y = np.asarray(x), np.asarray(y)
    jax.clear_caches()
    out = {"problems": n_problems, "n": args.n}
    for label in ("first_call_s", "second_call_s"):
        start = time.perf_counter()
        est = mi.estimate_batch(x, y, protocol="fast", steps=args.fast_steps)
        out[label] = time.perf_counter() - start
    out["values_nats"] = [float(v) for v in est.values]
    out["true_mi_nats"] = args.d / 2 * math.log(1.01)
    out["per_problem_s_second_call"] = out["second_call_s"] / n_problems
    return out


def variant_critic(name: str, compute_dtype):
    """Speed variants of the paper concat critic (same function, different memory traffic).

    base:        ie_jax.mi.critics as committed (y-part rows gathered by the permutation; its gradient is
                 the gather's transpose, a scatter-add).
    unique:      the gather marked unique_indices (a permutation), so its transpose needs no atomics.
    perm_vjp:    a custom VJP: the gradient of rows gathered by perm is the gather by the inverse permutation.
    bf16_act:    perm_vjp + matmul outputs, bias and LeakyReLU in bf16 (fp32 accumulation inside the
                 matmul; the scores and the loss stay fp32), as torch autocast keeps activations.
    bf16_act_data: bf16_act with x and y stored in bf16 (no per-step cast of the fp32 data).
    """
    import jax
    import jax.numpy as jnp

    from ie_jax.mi import critics

    if name == "base":
        return critics.paper_concat(compute_dtype=compute_dtype)
    name = name.removesuffix("_data")

    @jax.custom_vjp
    def permute_rows(a, perm):
        return a[perm]

    def fwd(a, perm):
        return a[perm], jnp.argsort(perm)

    def bwd(inverse, g):
        return g[inverse], None

    permute_rows.defvjp(fwd, bwd)
    act_dtype = compute_dtype if name == "bf16_act" else jnp.float32

    def mm(a, w):
        return jnp.matmul(a.astype(compute_dtype), w.astype(compute_dtype), preferred_element_type=act_dtype)

    def gather(a, idx):
        if name == "unique":
            return a.at[idx].get(unique_indices=True, mode="promise_in_bounds")
        return permute_rows(a, idx)

    base = critics.paper_concat(compute_dtype=compute_dtype)

    def apply(params, x, y, marginal_index):
        first = params["first"]
        hx = mm(x, first["w_x"])
        hy = mm(y, first["w_y"]) + first["b"].astype(act_dtype)
        pre = jnp.concatenate([hx + hy, hx[: marginal_index.shape[0]] + gather(hy, marginal_index)], axis=0)
        h = critics._leaky_relu(pre)
        rest = params["rest"]
        for i, layer in enumerate(rest):
            last = i == len(rest) - 1
            h = (jnp.matmul(h.astype(compute_dtype), layer["w"].astype(compute_dtype), preferred_element_type=jnp.float32)
                 if last else mm(h, layer["w"])) + layer["b"].astype(jnp.float32 if last else act_dtype)
            if not last:
                h = critics._leaky_relu(h)
        scores = h[:, 0].astype(jnp.float32)
        n_joint = x.shape[0]
        return scores[:n_joint], scores[n_joint:]

    return critics.Critic(f"paper_concat_{name}", base.init, apply, False)


def variants_section(args, n_problems: int, names=("base", "unique", "perm_vjp", "bf16_act")):
    """Per-step time of the critic variants (paper protocol, bf16 matmuls), P problems on one device; each
    variant goes to `train_critics` as its `critic` argument."""
    import jax.numpy as jnp

    from ie_jax.mi.protocols import resolve

    out = {"problems": n_problems, "steps_timed": args.paper_steps}
    flops = paper_flops(args.n, args.d)["executed"]
    for name in names:
        cfg, _ = resolve("paper", {"steps": args.paper_steps, "dtype": "bfloat16"})
        try:
            res = _train_time(cfg, n_problems, args.n, 0, args.d, None, 2,
                              "bfloat16" if name.endswith("_data") else "float32",
                              critic=variant_critic(name, jnp.bfloat16))
        except Exception as err:  # noqa: BLE001
            out[name] = {"error": repr(err)[:1500]}
            continue
        step = res["run_s_median"] / args.paper_steps
        out[name] = {**res, "step_s": step, "step_s_per_problem": step / n_problems,
                     "executed_tflops": n_problems * flops / step / 1e12}
        print(f"variant {name:<10} P={n_problems}: {1e3 * step / n_problems:6.2f} ms/step/problem "
              f"{out[name]['executed_tflops']:5.0f} TFLOP/s (compile {res['compile_s']:.0f} s)", flush=True)
    # Same function: the variants' first-step bounds agree (same init, same permutations).
    out["values_nats_first_last"] = {k: (v.get("train_value_first_nats"), v.get("train_value_last_nats"))
                                     for k, v in out.items() if isinstance(v, dict)}
    return out


def run_jax(args):
    import jax

    from ie_jax import sharding

    budget = Budget(args.budget_s)
    out = Path(args.out)
    results = {"env": jax_env(), "config": vars(args), "flops_per_step_per_problem": {
        "paper": paper_flops(args.n, args.d), "fast": fast_flops(512, args.d)},
        "bytes_per_step_per_problem": {"paper": paper_bytes(args.n, args.d)}}
    write(out, results)

    def run(name, fn):
        if budget.left() < 30:
            results[name] = {"skipped": "time budget"}
            return
        start = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as err:  # noqa: BLE001 - one failing section must not lose the others
            results[name] = {"error": repr(err)[:2000], "traceback": traceback.format_exc()[-3000:]}
            print(f"{name}: {err!r}"[:500], flush=True)
        if isinstance(results[name], dict):
            results[name]["section_wall_s"] = time.perf_counter() - start
        write(out, results)

    problems = [int(p) for p in args.problems.split(",")]
    one = sharding.make_mesh(1)
    if args.variants:
        for p in (int(v) for v in args.variants.split(",")):
            run(f"variants_P{p}", lambda p=p: variants_section(args, p, tuple(args.variant_names.split(","))))
        if args.only_variants:
            summarise(results)
            return
    run("peak", lambda: section_peak(args.peak_size))
    for dtype in args.paper_dtypes.split(","):
        record = {}
        run(f"paper_{dtype}_1gpu", lambda: (paper_section(args, dtype, problems, one, 1, record, budget), record)[1])
    run("faithful_fp32_1gpu", lambda: faithful_section(args))
    record_fast = {}
    run("fast_1gpu", lambda: (fast_section(args, problems, one, 1, record_fast, budget), record_fast)[1])
    n_dev = len(jax.devices())
    if n_dev > 1:
        mesh = sharding.make_mesh(n_dev)
        scale_problems = [p * n_dev for p in problems if p > 1] or [n_dev]
        record = {}
        run(f"paper_bfloat16_{n_dev}gpu",
            lambda: (paper_section(args, "bfloat16", sorted(set(scale_problems + [SWEEP_PROBLEMS])), mesh, n_dev, record,
                                   budget), record)[1])
        record2 = {}
        run(f"fast_{n_dev}gpu", lambda: (fast_section(args, [SWEEP_PROBLEMS], mesh, n_dev, record2, budget), record2)[1])
    if args.api_problems:
        run("api_fast", lambda: api_section(args, args.api_problems))
    results["wall_s"] = args.budget_s - budget.left()
    write(out, results)
    summarise(results)


def summarise(results: dict):
    peak = results.get("peak", {}).get("bf16", {}).get("tflops", math.nan)
    print(f"\n{results['env']['devices'][0]} x{results['env']['n_devices']}, jax {results['env']['jax']}, "
          f"{results['env']['date_utc']}, bf16 peak {peak:.0f} TFLOP/s")
    for name, sec in results.items():
        if not isinstance(sec, dict) or not (name.startswith("paper_") or name.startswith("fast_")):
            continue
        for key, e in sec.items():
            if not isinstance(e, dict) or "problems" not in e:
                continue
            if name.startswith("paper_"):
                print(f"{name:<22}{key:>6} chunk {e['chunk']:>3}: {e['critic_steps_per_s']:8.1f} critic-steps/s "
                      f"{e['executed_tflops']:6.0f} TFLOP/s ({100 * e['executed_tflops'] / (peak * e['devices']):4.0f}% of peak x devices) "
                      f"10k steps {e['extrapolated_10k_steps_s']:8.0f} s")
            else:
                print(f"{name:<22}{key:>6} chunk {e['chunk']:>3}: {e['total_s']:8.1f} s for {e['steps']} steps")
    f = results.get("faithful_fp32_1gpu", {})
    if "step_s_median" in f:
        print(f"faithful fp32 baseline: {f['step_s_median'] * 1e3:.1f} ms/step, sweep {f['extrapolated_sweep_108_s'] / 3600:.1f} h")


# ---------------------------------------------------------------------------------------------------------
# PyTorch reference loop

def run_torch_reference(args):
    """The reference's MINE loop (Chen et al. code shape) in PyTorch on one critic: fp32 and bf16 autocast."""
    import numpy as np
    import torch
    from transformers import get_polynomial_decay_schedule_with_warmup

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    n, d = args.n, args.d
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(n, d, device=dev, generator=gen)
    y = 0.1 * x + torch.randn(n, d, device=dev, generator=gen)
    results = {"env": {"date_utc": now(), "torch": torch.__version__, "device": torch.cuda.get_device_name() if dev == "cuda"
                       else platform.processor(), "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                       "nvidia_smi": nvidia_smi()}, "config": vars(args)}
    flops = paper_flops(n, d)
    for mode in ("fp32", "bf16_autocast"):
        widths = [2 * d, *PAPER_HIDDEN, 1]
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            lin = torch.nn.Linear(a, b)
            torch.nn.init.xavier_normal_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
            layers += [lin, torch.nn.LeakyReLU()]
        net = torch.nn.Sequential(*layers[:-1]).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        sched = get_polynomial_decay_schedule_with_warmup(opt, 5, PAPER_STEPS, lr_end=1e-8, power=3)
        tiled_x = torch.cat([x, x], 0)
        times = []
        for t in range(args.reference_steps + 3):
            if dev == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            perm = torch.randperm(n)
            inputs = torch.cat([tiled_x, torch.cat([y, y[perm]], 0)], 1)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=mode != "fp32"):
                logits = net(inputs).float()
            loss = -np.log2(np.exp(1)) * (torch.mean(logits[:n]) - torch.log(torch.mean(torch.exp(logits[n:]))))
            net.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            info = float(-loss.detach())  # .item(): the reference syncs every step
            if t >= 3:
                times.append(time.perf_counter() - start)
        step_s = median(times)
        results[mode] = {"step_s_median": step_s, "step_s": times, "info_bits_last": info,
                         "reference_executed_tflops": flops["reference_executed"] / step_s / 1e12,
                         "issue_convention_tflops": flops["issue_convention"] / step_s / 1e12,
                         "extrapolated_sweep_108_s": SWEEP_PROBLEMS * PAPER_STEPS * step_s}
        print(f"torch reference {mode}: {step_s * 1e3:.1f} ms/step ({results[mode]['issue_convention_tflops']:.0f} "
              f"TFLOP/s issue convention), sweep {results[mode]['extrapolated_sweep_108_s'] / 3600:.1f} h", flush=True)
        del net, opt
        write(Path(args.out), results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=300_000, help="pairs per problem")
    parser.add_argument("--d", type=int, default=768, help="width of x and of y")
    parser.add_argument("--problems", default="1,12,108")
    parser.add_argument("--paper-steps", type=int, default=50, help="steps timed (extrapolated to 10,000)")
    parser.add_argument("--paper-dtypes", default="bfloat16,float32")
    parser.add_argument("--paper-chunk", type=int, default=12, help="problems per device per chunk (halved on OOM)")
    parser.add_argument("--fast-steps", type=int, default=2000)
    parser.add_argument("--fast-chunk", type=int, default=36, help="problems per device per chunk (halved on OOM)")
    parser.add_argument("--peak-size", type=int, default=8192)
    parser.add_argument("--api-problems", type=int, default=0, help="problems for the estimate_batch end-to-end run")
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument("--variants", default="", help="problem counts for the critic speed variants (e.g. 1,12)")
    parser.add_argument("--variant-names", default="base,unique,perm_vjp,bf16_act")
    parser.add_argument("--only-variants", action="store_true")
    parser.add_argument("--torch-reference", action="store_true")
    parser.add_argument("--reference-steps", type=int, default=10)
    args = parser.parse_args()
    if args.torch_reference:
        run_torch_reference(args)
    else:
        run_jax(args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
