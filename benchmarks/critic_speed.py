"""Critic training throughput: steps/s and TFLOP/s for P problems trained together, vs a faithful baseline.

Ours: `ie_jax.mi.train.train_critics` (P critics vmapped, lax.scan over steps, first-layer x/y parts
computed once). Baseline, in the same run: the reference's way: one critic at a time, fp32, the
[2N, 2d] concatenated input through the whole MLP, one jitted step per Python-loop iteration with the
bound fetched to the host each step (the reference's `info` check). Speed-ups are ratios measured side
by side on the same device.

FLOPs counted (per critic step) for the paper critic: the model's matmuls, forward (2 x m x k x n) plus
backward (2x forward), with the first layer counted as executed (ours: two [N, d] x [d, 768]; the
baseline: one [2N, 2d] x [2d, 768]). TFLOP/s uses the counted FLOPs of the method that ran.

  python benchmarks/critic_speed.py --n 300000 --d 768 --problems 1,12,108 --steps 20 --dtype bfloat16
  python benchmarks/critic_speed.py --n 4096 --d 64 --problems 1,4 --steps 5     # CPU smoke run
Writes benchmarks/results/critic_speed_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ie_jax import sharding
from ie_jax.mi import bounds
from ie_jax.mi.critics import PAPER_HIDDEN, paper_concat
from ie_jax.mi.protocols import resolve
from ie_jax.mi.train import make_optimizer, train_critics

RESULTS = Path(__file__).parent / "results"


def paper_flops_per_step(n: int, d: int, *, reuse_first_layer: bool) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward) of the paper critic, full batch."""
    widths = PAPER_HIDDEN + (1,)
    first = 2 * (2 * n * d * widths[0]) if reuse_first_layer else 2 * (2 * n) * (2 * d) * widths[0]
    rest = sum(2 * (2 * n) * a * b for a, b in zip(widths[:-1], widths[1:]))
    return 3.0 * (first + rest)


def fast_flops_per_step(batch: int, d: int, hidden: tuple[int, ...], embed: int) -> float:
    sizes = (d,) + tuple(hidden) + (embed,)
    encoders = 2 * sum(2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 3.0 * (encoders + 2 * batch * batch * embed)


def time_ours(cfg, n, d, problems, steps, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((problems, n, d), dtype=np.float32)
    y = (0.5 * x + rng.standard_normal((problems, n, d), dtype=np.float32)).astype(np.float32)
    mesh = sharding.make_mesh(min(problems, len(jax.devices())))
    pad = -(-problems // mesh.devices.size) * mesh.devices.size
    arrays = [sharding.shard_problems(sharding.pad_problems(a, pad), mesh) for a in (x, y, x[:, :0], y[:, :0])]
    keys = jax.vmap(jax.random.wrap_key_data)(jnp.stack([jax.random.key_data(jax.random.key(0))]))
    run = lambda: jax.block_until_ready(train_critics(cfg, *arrays, keys, eval_batch=0))
    start = time.perf_counter()
    run()  # compile + first run
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / steps, compile_s


def time_baseline(n, d, steps, seed=0):
    """One paper critic, fp32, concatenated [2N, 2d] input, a Python loop with a host fetch per step."""
    cfg, _ = resolve("paper", {"steps": steps})
    critic = paper_concat()
    params = critic.init(jax.random.key(seed), d, d)
    # The reference's single [2d, 768] first layer, applied to the concatenated input.
    first = jnp.concatenate([params["first"]["w_x"], params["first"]["w_y"]], 0)
    params = {"w0": first, "b0": params["first"]["b"], "rest": params["rest"]}
    optimizer = make_optimizer(cfg)
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, d), dtype=np.float32))
    y = x * 0.5 + jnp.asarray(rng.standard_normal((n, d), dtype=np.float32))

    def loss_fn(params, inputs):
        h = jax.nn.leaky_relu(inputs @ params["w0"] + params["b0"], 0.01)
        for i, layer in enumerate(params["rest"]):
            h = h @ layer["w"] + layer["b"]
            if i < len(params["rest"]) - 1:
                h = jax.nn.leaky_relu(h, 0.01)
        value = bounds.dv_bound(h[:n, 0], h[n:, 0])
        return -value, value

    @jax.jit
    def step(params, opt_state, key):
        perm = jax.random.permutation(key, n)
        inputs = jnp.concatenate([jnp.concatenate([x, x]), jnp.concatenate([y, y[perm]])], axis=1)
        (_, value), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, inputs)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    key = jax.random.key(1)
    params, opt_state, value = step(params, opt_state, key)
    float(value)  # compile
    start = time.perf_counter()
    for t in range(steps):
        params, opt_state, value = step(params, opt_state, jax.random.fold_in(key, t))
        float(value)  # the reference reads `info` on the host every step (max / NaN check)
    return (time.perf_counter() - start) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(v) for v in s.split(",")]
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--problems", type=ints, default=[1, 12, 108])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="measured bf16 peak, for % of peak")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)

    device = jax.devices()[0]
    rows = []
    baseline_s = None if args.skip_baseline else time_baseline(args.n, args.d, args.steps)
    baseline_flops = paper_flops_per_step(args.n, args.d, reuse_first_layer=False)
    if baseline_s:
        rows.append({"method": "baseline (1 critic, fp32, host loop)", "problems": 1, "s_per_step": baseline_s,
                     "critic_steps_per_s": 1 / baseline_s, "tflops": baseline_flops / baseline_s / 1e12})
    for protocol in ("paper", "fast"):
        overrides = {"steps": args.steps, "dtype": args.dtype}
        if protocol == "fast":
            overrides["eval_every"] = 0  # throughput of training itself
        cfg, _ = resolve(protocol, overrides)
        if protocol == "paper":
            flops = paper_flops_per_step(args.n, args.d, reuse_first_layer=True)
        else:
            flops = fast_flops_per_step(cfg.batch_size, args.d, cfg.hidden, cfg.embed_dim)
        for problems in args.problems:
            try:
                s_per_step, compile_s = time_ours(cfg, args.n, args.d, problems, args.steps)
            except Exception as err:  # e.g. out of memory at P = 108 without chunking: record it
                rows.append({"method": f"ie_jax {protocol}", "problems": problems, "error": repr(err)[:300]})
                continue
            row = {"method": f"ie_jax {protocol} ({args.dtype})", "problems": problems, "s_per_step": s_per_step,
                   "critic_steps_per_s": problems / s_per_step, "tflops": problems * flops / s_per_step / 1e12,
                   "compile_s": compile_s}
            if baseline_s and protocol == "paper":
                row["speedup_vs_baseline"] = baseline_s * problems / s_per_step
            if args.peak_tflops:
                row["pct_of_peak"] = 100 * row["tflops"] / args.peak_tflops
            rows.append(row)
            print(row, flush=True)
    out = {"device": device.device_kind, "platform": device.platform, "n_devices": len(jax.devices()),
           "jax": jax.__version__, "n": args.n, "d": args.d, "steps": args.steps, "dtype": args.dtype, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = device.device_kind.replace(" ", "_").lower()
    (RESULTS / f"critic_speed_{name}.json").write_text(json.dumps(out, indent=1))
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
