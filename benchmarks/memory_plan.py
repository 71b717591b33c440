"""The default run's memory plan on GPU-sized devices, and what its compiled programs need (runs on a CPU).

For GPT-2 small (d = 768, 12 layers) and medium (d = 1024, 24 layers) at N = 20,000, T = 8, Gaussian inputs with
isolated tokens (16 problems per layer), with the default estimator (noise over its 16-sigma grid) and the fast
neural protocol (--protocol fast): the plan `ie-jax measure` makes (`ie_jax.ie.measure.plan_chunks`) on one device where JAX may allocate 78 or 40 GiB, or 75% of an H100 80GB or
A100 40GB (JAX's default preallocation, its `bytes_limit`), with the model's weights (at most 1.5 GiB) in use: the budget, where the
states stay, the bytes per problem, the chunk size and the planned peak.

--compile: the planned chunk is also compiled for this machine's CPU from shapes alone (nothing is allocated,
`ie_jax.mi.chunks.compiled_peak`; the noise estimator's programs at every state distinct, its largest shapes) and
its compiled peak set beside the plan. The CPU's memory analysis approximates the GPU's; the default budget leaves
20% of the device free for the difference. Seconds per noise row, minutes per neural row.

    python benchmarks/memory_plan.py [--compile] [--out benchmarks/results/memory_plan_cpu.json]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ie_jax import sharding  # noqa: E402
from ie_jax.ie import measure  # noqa: E402
from ie_jax.mi import chunks  # noqa: E402
from ie_jax.mi.protocols import resolve  # noqa: E402

MODELS = {"gpt2": dict(d=768, layers=12), "gpt2-medium": dict(d=1024, layers=24)}
# what JAX may allocate: all of 78 / 40 GiB, or JAX's default 75% of an H100 80GB (81,559 MiB) / A100 40GB (40,536 MiB)
DEVICES_GIB = {"78 GiB": 78.0, "40 GiB": 40.0, "H100 80GB, JAX's 75%": 0.75 * 81559 / 1024,
               "A100 40GB, JAX's 75%": 0.75 * 40536 / 1024}
ESTIMATORS = {"default": (None, None), "fast": ("fast", None)}  # measure()'s default (noise), --protocol fast
GiB = 2**30


def plan_for(model: str, device_gib: float, estimator: str, n: int = 20_000, seq_len: int = 8,
             weights_gib: float = 1.5):
    d, layers = MODELS[model]["d"], MODELS[model]["layers"]
    est = measure.make_estimator(*ESTIMATORS[estimator], None, (0,), False, {})
    est.n_devices = lambda n_problems: 1  # one device
    states = 2 * 4 * layers * d * (n * seq_len + n * seq_len)  # context and isolated-token states, both sides
    budget = int(chunks.DEFAULT_FRACTION * (device_gib - weights_gib) * GiB)  # `default_memory_budget` there
    limit, chunks.device_memory_limit = chunks.device_memory_limit, lambda: int(device_gib * GiB)
    try:
        return measure.plan_chunks(est, layers * 2 * seq_len, n, d, d, states, budget), est, layers * 2 * seq_len, d
    finally:
        chunks.device_memory_limit = limit


def compiled_chunk_peak(est, size: int, n: int, d: int) -> int:
    """Compiled peak of one chunk: the fast protocol's `estimate_batch` as a GPU runs it (the Gaussian critic
    vmapped over problems), or the noise estimator's programs (tests/mi/test_chunks.py's `noise_peak`)."""
    if est.name == "noise":
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        from test_chunks import noise_peak

        return noise_peak(size, n, d, d, n_sigmas=len(est.sigmas)).peak_bytes
    estimate = importlib.import_module("ie_jax.mi.estimate")
    cfg, options = resolve("fast", {})
    run = estimate.chunk_program(cfg, options, n, 0, (0,), sharding.make_mesh(1))
    backend, jax.default_backend = jax.default_backend, lambda: "gpu"
    try:
        shape = jax.ShapeDtypeStruct((size, n, d), jnp.float32)
        return chunks.compiled_peak(run, shape, shape).peak_bytes
    finally:
        jax.default_backend = backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compile", action="store_true", help="compile each planned chunk for the CPU")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS), help="of default,fast")
    parser.add_argument("--out", default=None, help="write the rows as JSON (rows of other estimators in it are kept)")
    args = parser.parse_args()
    rows = []
    for estimator, model, (device, device_gib) in itertools.product(args.estimators.split(","), MODELS,
                                                                   DEVICES_GIB.items()):
        plan, est, n_problems, d = plan_for(model, device_gib, estimator)
        chunk_peak = chunks.peak_bytes(plan.chunk_size, plan.bytes_per_problem)
        row = {"estimator": est.settings[0].split(" sigma")[0], "model": model, "device": device,
               "device_gib": device_gib, "budget_gib": plan.budget / GiB, "states_on_device": plan.states_on_device,
               "states_gib": plan.reserved / GiB, "bytes_per_problem_gib": plan.bytes_per_problem / GiB,
               "problems": n_problems, "chunk_size": plan.chunk_size, "n_chunks": -(-n_problems // plan.chunk_size),
               "planned_chunk_gib": chunk_peak / GiB, "planned_peak_gib": (plan.reserved + chunk_peak) / GiB}
        if args.compile:
            t0 = time.perf_counter()
            row["compiled_chunk_gib"] = compiled_chunk_peak(est, plan.chunk_size, 20_000, d) / GiB
            row["compile_s"] = time.perf_counter() - t0
            jax.clear_caches()
        rows.append(row)
        print(f"{row['estimator']:11s} {model:12s} {device:21s} budget {row['budget_gib']:4.1f} GiB, states "
              f"{'on the device' if plan.states_on_device else 'on the host  '} {row['states_gib']:4.1f} GiB, "
              f"{row['bytes_per_problem_gib']:.3f} GiB/problem: {row['n_chunks']:2d} chunks of {plan.chunk_size:2d}, "
              f"planned chunk {row['planned_chunk_gib']:4.1f} GiB, peak {row['planned_peak_gib']:4.1f} GiB"
              + (f"; compiled chunk (CPU) {row['compiled_chunk_gib']:4.1f} GiB" if args.compile else ""), flush=True)
    if args.out:
        kept = []
        if os.path.exists(args.out):
            with open(args.out) as f:
                kept = [r for r in json.load(f) if r["estimator"] not in {row["estimator"] for row in rows}]
        with open(args.out, "w") as f:
            json.dump(rows + kept if rows and rows[0]["estimator"] == "noise" else kept + rows, f, indent=1)


RESULTS = os.path.join(os.path.dirname(__file__), "results", "memory_plan_cpu.json")


def tables() -> dict[str, str]:
    """{path: markdown} of the committed rows (scripts/docs.py writes it beside the JSON)."""
    with open(RESULTS) as f:
        rows = json.load(f)
    lines = ["| estimator | model | device (JAX may allocate) | budget | states | per problem | chunks | planned chunk "
             "| planned peak | compiled chunk (CPU) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        states = f"device, {r['states_gib']:.1f} GiB" if r["states_on_device"] else "host"
        compiled = f"{r['compiled_chunk_gib']:.1f} GiB" if "compiled_chunk_gib" in r else "-"
        device = r["device"] if r["device"].endswith("GiB") else f"{r['device']} ({r['device_gib']:.1f} GiB)"
        lines.append(f"| {r['estimator']} | {r['model']} | {device} | "
                     f"{r['budget_gib']:.1f} GiB | {states} | {r['bytes_per_problem_gib']:.3f} GiB | {r['n_chunks']} "
                     f"x {r['chunk_size']} | {r['planned_chunk_gib']:.1f} GiB | {r['planned_peak_gib']:.1f} GiB | "
                     f"{compiled} |")
    text = ("GPT-2 shapes at N = 20,000, T = 8, Gaussian inputs (`benchmarks/memory_plan.py --compile`, this CPU, jax "
            "0.10.2): the plan of `ie-jax measure` on one device, and the planned chunk compiled for the CPU from "
            "shapes alone.\n\n" + "\n".join(lines) + "\n")
    return {RESULTS.replace(".json", ".md"): text}


if __name__ == "__main__":
    main()
