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
            problem axis as `estimate_batch` runs them, from the measured per-chunk times;
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
        # Chunks as estimate_batch would cut them: as few as memory allows, equal sizes, multiples of the devices.
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



# ---------------------------------------------------------------------------------------------------------
# Tables: results/critic_gpu.md and results/critic_gpu_x4.md from the committed JSON (`make docs` writes them)

RESULTS = Path(__file__).parent / "results"
ISSUE6 = {"sweep_h": 2.0, "speedup": 15.0, "peak_pct": 60.0, "fast_s": 120.0, "two_gpus": 1.9, "capture_vs_hf": 2.0}
ISSUE7_SCALING = 3.6  # issue 7: 4 GPUs at least 3.6x one


def sig3(x: float) -> str:
    """Three significant figures, thousands separated (1,563; 642; 84.9; 7.27)."""
    return f"{x:,.{max(0, 2 - math.floor(math.log10(abs(x))))}f}" if x else "0"


def _hours(seconds: float) -> str:
    return sig3(seconds / 3600)


def _x(ratio: float) -> str:
    return f"{ratio:.{2 if ratio < 1 else 1}f}x"


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _table(head: str, rows) -> list[str]:
    return [f"| {head} |", "|" + "---|" * (head.count("|") + 1)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def capture_bf16(results: Path = RESULTS) -> list[tuple[str, int, float, float]]:
    """Per bf16 capture shape: (shape, block parameters, ie_jax / best HF tokens per second, % of the bf16 peak)."""
    jax_models = json.loads((results / "capture_jax_gpu.json").read_text())["models"]
    hf_models = json.loads((results / "capture_hf_gpu.json").read_text())["models"]
    peak = json.loads((results / "critic_gpu.json").read_text())["peak"]["bf16"]["tflops"]
    out = []
    for key, m in jax_models.items():
        if key.endswith("/bfloat16"):
            best_hf = max(hf_models[f"{key}/{a}"]["tokens_per_s"] for a in ("eager", "sdpa"))
            out.append((key.split("/")[0], m["block_params"], m["tokens_per_s"] / best_hf, 100 * m["tflops"] / peak))
    return out


def critic_tables(results: Path = RESULTS) -> str:
    """results/critic_gpu.md: ceilings, the paper protocol per step, the 108-problem sweep, the speed variants and
    issue 6's targets, from critic_gpu.json, reference_torch_gpu.json, variants_gpu.json, variants_bf16_gpu.json
    (and the capture JSON for the capture targets)."""
    load = lambda name: json.loads((results / f"{name}.json").read_text())  # noqa: E731
    c, ref = load("critic_gpu"), load("reference_torch_gpu")
    var, var16 = load("variants_gpu"), load("variants_bf16_gpu")
    peak = c["peak"]["bf16"]["tflops"]
    flops, nbytes = c["flops_per_step_per_problem"]["paper"], c["bytes_per_step_per_problem"]["paper"]
    issue_factor = flops["issue_convention"] / flops["executed"]
    v12 = var["variants_P12"]
    v16_12, v16_24 = (var16[f"variants_P{p}"]["bf16_act_data"] for p in (12, 24))
    gpu, memory, clock, power, driver = (p.strip() for p in c["env"]["nvidia_smi"].splitlines()[0].split(","))
    times = ", ".join(f"`{n}.json` {d['env']['date_utc'][11:16]}" for n, d in
                      (("critic_gpu", c), ("variants_gpu", var), ("variants_bf16_gpu", var16)))
    lines = [
        f"**Critic training on {gpu}** (`critic_gpu.json`, `reference_torch_gpu.json`, `variants_*gpu.json`)", "",
        f"Written by `benchmarks/sweep_gpu.py` from those files. {gpu} ({memory}, {power.replace('.00 W', ' W')}, "
        f"{clock} max SM clock, driver {driver}); jax {c['env']['jax']}, {c['env']['date_utc'][:10]} (UTC: {times}). "
        "The critic run and the PyTorch reference ran on a 2-GPU host (1-GPU rows on its GPU 0), the variants on "
        f"1-GPU machines. Paper critic, N = {c['config']['n']:,} pairs, d = {c['config']['d']}, full batch; ie_jax "
        f"timed {c['paper_bfloat16_1gpu']['P1']['steps_timed']} steps after compilation, the PyTorch reference "
        f"{len(ref['fp32']['step_s'])}, the JAX faithful baseline {c['faithful_fp32_1gpu']['steps_timed']} (medians), "
        "extrapolated to 10,000 steps. % peak is of the measured bf16 peak.", "",
    ]
    floor_ms = 1e3 * nbytes["total"] / (c["peak"]["copy"]["gb_per_s"] * 1e9)
    lines += _table("ceiling or count | value", [
        ("bf16 matmul 8192^3", f"{peak:.0f} TFLOP/s"),
        ('fp32 matmul at JAX\'s default precision (TF32)', f"{c['peak']['fp32_default']['tflops']:.0f} TFLOP/s"),
        ('fp32 matmul, precision "highest"', f"{c['peak']['fp32_highest']['tflops']:.0f} TFLOP/s"),
        ("device copy (read + write)", f"{c['peak']['copy']['gb_per_s'] / 1e3:.2f} TB/s"),
        ("FLOPs per problem-step executed by ie_jax", f"{flops['executed'] / 1e12:.2f} TFLOP"),
        ("FLOPs per problem-step of the reference's [2N, 2d] concat input",
         f"{flops['reference_executed'] / 1e12:.2f} TFLOP"),
        ("FLOPs per problem-step, issue convention (6 x 2N x parameters)",
         f"{flops['issue_convention'] / 1e12:.2f} TFLOP"),
        ("fewest bytes per problem-step, fp32 activations",
         f"{nbytes['total'] / 1e9:.1f} GB (data {nbytes['data'] / 1e9:.1f}, the 768-wide layer "
         f"{nbytes['first_layer'] / 1e9:.1f}, narrower layers {nbytes['other_layers'] / 1e9:.1f})"),
        ("those bytes at the measured copy bandwidth", f"{floor_ms:.1f} ms"),
        ("the executed FLOPs at the bf16 peak", f"{1e3 * flops['executed'] / (peak * 1e12):.1f} ms"),
    ])

    rows = []
    for label, r in (("PyTorch reference loop, fp32 (same GPU, same run)", ref["fp32"]),
                     ("PyTorch reference loop, bf16 autocast", ref["bf16_autocast"]),
                     ("JAX faithful baseline: one critic, fp32 highest, host loop + readback",
                      c["faithful_fp32_1gpu"])):
        rows.append((label, sig3(1e3 * r["step_s_median"]), f"{1 / r['step_s_median']:.1f}",
                     f"{r['reference_executed_tflops']:.0f}", f"{r['issue_convention_tflops']:.0f}"))
    for label, r, devices in (("ie_jax bf16, P = 1", c["paper_bfloat16_1gpu"]["P1"], 1),
                              ("ie_jax bf16, P = 12 (one chunk)", c["paper_bfloat16_1gpu"]["P12"], 1),
                              ('ie_jax "float32" (TF32), P = 12', c["paper_float32_1gpu"]["P12"], 1),
                              ("ie_jax bf16, P = 24 on 2 GPUs (12 each)", c["paper_bfloat16_2gpu"]["P24"], 2)):
        per = "" if r["problems"] == 1 else f" per {r['problems']}"
        pct = f"{100 * r['executed_tflops'] / (devices * peak):.0f}%" + (f" of {devices} x peak" if devices > 1 else "")
        rows.append((label, sig3(1e3 * r["chunk_step_s"]) + per, f"{r['critic_steps_per_s']:.1f}",
                     f"{r['executed_tflops']:.0f} ({pct})", f"{r['issue_convention_tflops']:.0f}"))
    for label, v in (("variant: bf16 activations, P = 12", v12["bf16_act"]),
                     ("variant: bf16 activations + bf16 data, P = 24", v16_24)):
        rows.append((label, sig3(1e3 * v["step_s_per_problem"]) + " per problem", f"{1 / v['step_s_per_problem']:.1f}",
                     f"{v['executed_tflops']:.0f} ({100 * v['executed_tflops'] / peak:.0f}%)",
                     f"{v['executed_tflops'] * issue_factor:.0f}"))
    lines += ["", "**Paper protocol, per step**", ""]
    lines += _table("paper protocol | ms / step | critic-steps/s | TFLOP/s executed (% peak) | "
                    "issue-convention TFLOP/s", rows)

    sweep = {"reference": ref["fp32"]["extrapolated_sweep_108_s"],
             "faithful": c["faithful_fp32_1gpu"]["extrapolated_sweep_108_s"],
             "reference_bf16": ref["bf16_autocast"]["extrapolated_sweep_108_s"],
             "bf16_1gpu": c["paper_bfloat16_1gpu"]["P108"]["extrapolated_10k_steps_s"],
             "fp32_1gpu": c["paper_float32_1gpu"]["P108"]["extrapolated_10k_steps_s"],
             "bf16_2gpu": c["paper_bfloat16_2gpu"]["P108"]["extrapolated_10k_steps_s"],
             "variant": SWEEP_PROBLEMS * v16_12["step_s_per_problem"] * PAPER_STEPS}
    vs = lambda key: _x(sweep["reference"] / sweep[key])  # noqa: E731
    one, two = c["paper_bfloat16_1gpu"]["P108"], c["paper_bfloat16_2gpu"]["P108"]
    f1, f2, api = c["fast_1gpu"]["P108"], c["fast_2gpu"]["P108"], c["api_fast"]
    lines += ["", f"**Whole GPT-2-small-shaped sweep, {SWEEP_PROBLEMS} problems (12 layers x (8 micro + 1 macro))**",
              ""]
    lines += _table("sweep | time | vs PyTorch fp32 reference (same run)", [
        ("PyTorch reference fp32, one critic at a time (extrapolated)", f"{_hours(sweep['reference'])} h", "1x"),
        ("JAX faithful baseline (extrapolated)", f"{_hours(sweep['faithful'])} h", vs("faithful")),
        ("PyTorch bf16 autocast, one at a time (extrapolated)", f"{_hours(sweep['reference_bf16'])} h",
         vs("reference_bf16")),
        (f"**ie_jax paper protocol, bf16, 1 GPU** ({one['n_chunks']} chunks of {one['chunk']}, extrapolated)",
         f"**{_hours(sweep['bf16_1gpu'])} h**", f"**{vs('bf16_1gpu')}**"),
        ('ie_jax paper protocol, "float32" (TF32), 1 GPU', f"{_hours(sweep['fp32_1gpu'])} h", vs("fp32_1gpu")),
        (f"**ie_jax paper protocol, bf16, 2 GPUs** ({two['n_chunks']} chunks of {two['chunk']}, extrapolated)",
         f"**{_hours(sweep['bf16_2gpu'])} h**", vs("bf16_2gpu")),
        (f"variant bf16 activations + data, 1 GPU ({SWEEP_PROBLEMS} problems x "
         f"{sig3(1e3 * v16_12['step_s_per_problem'])} ms x 10k)", f"{_hours(sweep['variant'])} h", vs("variant")),
        (f"**ie_jax fast protocol, 1 GPU** ({f1['n_chunks']} chunks of {f1['chunk']}, all {f1['steps']:,} steps run, "
         "held-out evals included)", f"**{f1['total_s']:.1f} s** + {f1['chunk_run']['compile_s']:.1f} s compile", ""),
        (f"**ie_jax fast protocol, 2 GPUs** ({f2['n_chunks']} chunks of {f2['chunk']})",
         f"**{f2['total_s']:.1f} s** + {f2['chunk_run']['compile_s']:.1f} s compile", ""),
        (f'`estimate_batch(protocol="fast")` end to end, P = {api["problems"]} (host preparation included)',
         f"{api['second_call_s']:.1f} s ({api['first_call_s']:.1f} s first call; "
         f"{api['per_problem_s_second_call']:.1f} s per problem)", ""),
    ])

    lines += ["", "**Speed variants of the paper critic (same protocol; ms per problem-step)**", ""]
    lines += _table("variant | run | ms / problem-step | TFLOP/s executed (% peak)", [
        (label, run, sig3(1e3 * v["step_s_per_problem"]),
         f"{v['executed_tflops']:.0f} ({100 * v['executed_tflops'] / peak:.0f}%)")
        for label, run, v in (
            ("base: fp32 activations", "variants_gpu, P = 12", v12["base"]),
            ("unique-index gather instead of the permutation's scatter-add", "variants_gpu, P = 12", v12["unique"]),
            ("inverse-permutation custom VJP", "variants_gpu, P = 12", v12["perm_vjp"]),
            ("bf16 activations (fp32 accumulation, scores and loss)", "variants_gpu, P = 12", v12["bf16_act"]),
            ("bf16 activations + x, y stored in bf16", "variants_bf16_gpu, P = 12", v16_12),
            ("bf16 activations + x, y stored in bf16", "variants_bf16_gpu, P = 24", v16_24))])

    caps = capture_bf16(results)
    large = [(name, pct) for name, params, _, pct in caps if params >= 1e9]
    p12 = c["paper_bfloat16_1gpu"]["P12"]
    pct, pct_v = 100 * p12["executed_tflops"] / peak, 100 * v16_24["executed_tflops"] / peak
    fast_end_to_end = SWEEP_PROBLEMS * api["per_problem_s_second_call"]
    step2 = c["paper_bfloat16_2gpu"]["P24"]["critic_steps_per_s"] / p12["critic_steps_per_s"]
    sweep2, fast2 = sweep["bf16_1gpu"] / sweep["bf16_2gpu"], f1["total_s"] / f2["total_s"]
    t = ISSUE6
    lines += ["", "**Targets (issue 6)**", ""]
    lines += _table("target (issue 6) | measured | met?", [
        (f"paper sweep <= {t['sweep_h']:.0f} h on one GPU",
         f"{_hours(sweep['bf16_1gpu'])} h bf16 ({_hours(sweep['variant'])} h with the bf16-activation variant; "
         f"{_hours(sweep['bf16_2gpu'])} h on 2 GPUs)",
         f"{_met(sweep['bf16_1gpu'] <= 3600 * t['sweep_h'])} by {_x(sweep['bf16_1gpu'] / 3600 / t['sweep_h'])} "
         f"({_x(sweep['variant'] / 3600 / t['sweep_h'])} with the variant)"),
        (f">= {t['speedup']:.0f}x the reference",
         f"{_x(sweep['reference'] / sweep['bf16_1gpu'])} the same-run PyTorch fp32 loop "
         f"({_x(sweep['reference'] / sweep['variant'])} with the variant)",
         _met(sweep["reference"] / sweep["bf16_1gpu"] >= t["speedup"])),
        (f"critic training >= {t['peak_pct']:.0f}% of bf16 peak", f"{pct:.0f}% (P = 12); {pct_v:.0f}% with the variant",
         _met(pct >= t["peak_pct"])),
        (f"fast sweep <= {t['fast_s'] / 60:.0f} min",
         f"{f1['total_s']:.1f} s of GPU training (+ {f1['chunk_run']['compile_s']:.1f} s compile); end to end through "
         f"`estimate_batch` about {fast_end_to_end / 60:.0f} min ({api['per_problem_s_second_call']:.1f} s per "
         f"problem, from P = {api['problems']})",
         f"{_met(f1['total_s'] + f1['chunk_run']['compile_s'] <= t['fast_s'])} on the GPU, "
         f"{_met(fast_end_to_end <= t['fast_s'])} end to end"),
        (f"2 GPUs >= {t['two_gpus']:.1f}x one",
         f"{step2:.2f}x per step (P = 24 on 2 vs 12 on 1); {sweep2:.2f}x for the {SWEEP_PROBLEMS}-problem sweep; "
         f"fast sweep {fast2:.2f}x", f"{_met(step2 >= t['two_gpus'])} per step, {_met(sweep2 >= t['two_gpus'])} by "
                                     "the sweep's chunking"),
        (f"capture >= {t['capture_vs_hf']:.0f}x HF on gpt2-small shapes", f"{caps[0][2]:.2f}x (bf16)",
         _met(caps[0][2] >= t["capture_vs_hf"])),
        (f"capture >= {t['peak_pct']:.0f}% of bf16 peak at >= 1B parameters",
         ", ".join(f"{name} {p:.0f}%" for name, p in large), _met(all(p >= t["peak_pct"] for _, p in large))),
    ])

    lines += ["", "**Accuracy note: the fast protocol through `estimate_batch` at this size (not a speed result)**", ""]
    lines += _table("quantity | value", [
        ("true MI of y = 0.1 x + noise, d = 768", f"{api['true_mi_nats']:.2f} nats"),
        ("held-out estimate, mean of the P problems", f"{sum(api['values_nats']) / len(api['values_nats']):.2f} nats"),
        ("training bound at the last step (fast protocol, 1 GPU)",
         f"{f1['chunk_run']['train_value_last_nats']:.2f} nats"),
        (f"host memory for {SWEEP_PROBLEMS} problems of [{api['n']:,}, 2 x {c['config']['d']}] fp32",
         f"{SWEEP_PROBLEMS * api['n'] * 2 * c['config']['d'] * 4 / 1e9:.0f} GB"),
    ])
    return "\n".join(lines) + "\n"


def critic_x4_table(results: Path = RESULTS) -> str:
    """results/critic_gpu_x4.md: the paper critic on 1 and 4 GPUs of one host, and issue 7's scaling target."""
    x = json.loads((results / "critic_gpu_x4.json").read_text())
    peak = x["peak"]["bf16"]["tflops"]
    one, twelve, four = x["paper_bfloat16_1gpu"]["P1"], x["paper_bfloat16_1gpu"]["P12"], x["paper_bfloat16_4gpu"]["P48"]
    faithful = x["faithful_fp32_1gpu"]
    n1, n4 = math.ceil(SWEEP_PROBLEMS / twelve["problems"]), math.ceil(SWEEP_PROBLEMS / four["problems"])
    sweep1, sweep4 = n1 * twelve["extrapolated_10k_steps_s"], n4 * four["extrapolated_10k_steps_s"]
    step_scaling = four["critic_steps_per_s"] / twelve["critic_steps_per_s"]
    fast = {k: x[k]["P108"] for k in ("fast_1gpu", "fast_4gpu")}
    compile_s = [f["chunk_run"]["compile_s"] for f in fast.values()]
    rows = [(label, f"{1e3 * r['chunk_step_s']:.1f}", f"{r['critic_steps_per_s']:.1f}",
             f"{r['executed_tflops']:,.0f} ({100 * r['executed_tflops'] / (devices * peak):.0f}%)",
             f"{r['extrapolated_10k_steps_s']:,.0f} s")
            for label, r, devices in (("1 GPU, P = 1", one, 1), ("1 GPU, P = 12", twelve, 1),
                                      ("4 GPUs, P = 48 (12 per GPU)", four, 4))]
    rows.append(("faithful fp32 baseline, one critic, host loop", f"{1e3 * faithful['step_s_median']:.1f}",
                 f"{1 / faithful['step_s_median']:.1f}", "-",
                 f"sweep {_hours(faithful['extrapolated_sweep_108_s'])} h"))
    gpu = x["env"]["nvidia_smi"].splitlines()[0].split(",")[0]
    lines = ["**Four-GPU run** (`critic_gpu_x4.json`)", "",
             f"Written by `benchmarks/sweep_gpu.py` from that file. One call on a 4 x {gpu} host, "
             f"{x['env']['date_utc'][:10]} {x['env']['date_utc'][11:16]} UTC, jax {x['env']['jax']}; bf16 matmul peak "
             f"measured in the same run: {peak:.0f} TFLOP/s. Paper critic, N = {x['config']['n']:,}, "
             f"d = {x['config']['d']}, bf16, {four['steps_timed']} steps timed after compiling, extrapolated to "
             "10,000 steps; 1-GPU rows on GPU 0 of the same host.", ""]
    lines += _table("run | ms / step / chunk | critic-steps/s | TFLOP/s executed (% of peak x devices) | 10k steps",
                    rows)
    lines += [""] + _table("quantity | value | target (issue 7)", [
        ("critic-steps/s, 4 GPUs over 1", f"{step_scaling:.2f}x ({four['critic_steps_per_s']:.1f} vs "
         f"{twelve['critic_steps_per_s']:.1f})", f">= {ISSUE7_SCALING}x: {_met(step_scaling >= ISSUE7_SCALING)}"),
        (f"whole {SWEEP_PROBLEMS}-critic paper sweep (extrapolated)",
         f"1 GPU {n1} chunks x {twelve['extrapolated_10k_steps_s']:,.0f} s = {_hours(sweep1)} h; 4 GPUs {n4} chunks "
         f"of {four['problems']} x {four['extrapolated_10k_steps_s']:,.0f} s = {_hours(sweep4)} h: "
         f"**{sweep1 / sweep4:.2f}x**", f">= {ISSUE7_SCALING}x: {_met(sweep1 / sweep4 >= ISSUE7_SCALING)}"),
        (f"slots of the {four['problems']}-problem chunks filled by {SWEEP_PROBLEMS} problems",
         f"{100 * SWEEP_PROBLEMS / (n4 * four['problems']):.0f}% of {n4 * four['problems']}", ""),
        ("1-GPU paper sweep (bf16 activations) against the faithful fp32 baseline of the same run",
         f"{faithful['extrapolated_sweep_108_s'] / sweep1:.1f}x faster", ""),
        (f"fast protocol, {SWEEP_PROBLEMS} problems, {fast['fast_1gpu']['steps']} steps",
         f"{fast['fast_1gpu']['total_s']:.1f} s on 1 GPU, {fast['fast_4gpu']['total_s']:.1f} s on 4 GPUs (plus "
         f"{min(compile_s):.0f}-{max(compile_s):.0f} s compile)", ""),
    ])
    return "\n".join(lines) + "\n"


def tables(results: Path = RESULTS) -> dict[Path, str]:
    return {results / "critic_gpu.md": critic_tables(results), results / "critic_gpu_x4.md": critic_x4_table(results)}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
