"""`mi.estimate_batch` end to end for one chunk as the sweep forms it, against the previous path (97b21cf).

A GPT-2-small chunk: P problems of N = 20,000 pairs of d = 768 states, the fast protocol with its checks
(half-N critics, concat critic, Gaussian critic). Timed: the first call (compilation included), then a warm
call with `timings=` (each phase synchronised: setup, prepare, train, gaussian, readout, transfer, format;
the syncs only add time, so its total bounds a plain warm call from above), host_fraction = (setup +
transfer + format) / total. The previous path (host rankdata, numpy
Gaussian check) runs in a subprocess from a copy of the package at BASELINE, on the same numpy data, first
(before this process takes GPU memory); its values are compared with the new path's on the same data.

Run on the device machine:  python3 benchmarks/estimate_path.py --out $OUT/estimate_path.json
Tiny run on a CPU:          python3 benchmarks/estimate_path.py --problems 2 --n 2000 --d 16 --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = "97b21cf"  # the last commit before device-resident preparation


def numpy_pairs(n_problems: int, n: int, d: int, seed: int = 0):
    """y = 0.1 x + noise per coordinate (I = d/2 ln 1.01 nats), float32, the same in every process."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_problems, n, d), dtype=np.float32)
    y = (0.1 * x + rng.standard_normal((n_problems, n, d), dtype=np.float32)).astype(np.float32)
    return x, y


def device_pairs(n_problems: int, n: int, d: int, seed: int = 0):
    """The same kind of pairs generated on the device (as captured states are), no host copy."""
    import jax

    kx, kn = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (n_problems, n, d))
    return x, 0.1 * x + jax.random.normal(kn, (n_problems, n, d))


def time_calls(call, repeats: int) -> dict:
    start = time.perf_counter()
    result = call()
    out = {"first_call_s": time.perf_counter() - start, "warm_calls_s": []}
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        out["warm_calls_s"].append(time.perf_counter() - start)
    if out["warm_calls_s"]:
        out["warm_call_s"] = min(out["warm_calls_s"])
    out["values_nats"] = [float(v) for v in result.values]
    return out


def old_path(args) -> dict:
    """The previous path in a subprocess (its own JAX, its own compile), on `numpy_pairs`."""
    package = Path(args.old_package) if args.old_package else None
    with tempfile.TemporaryDirectory() as tmp:
        if package is None:
            package = Path(tmp)
            archive = subprocess.run(["git", "archive", BASELINE, "ie_jax"], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        code = (f"import sys, json; sys.path.insert(0, {str(package)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                "import estimate_path as b, ie_jax.mi as mi\n"
                f"x, y = b.numpy_pairs({args.old_problems}, {args.n}, {args.d})\n"
                f"out = b.time_calls(lambda: mi.estimate_batch(x, y, protocol='fast', steps={args.steps}), 1)\n"
                "out['package'] = mi.__file__\n"
                "print('RESULT', json.dumps(out))\n")
        env = {**os.environ, "PYTHONPATH": ""}
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             timeout=args.old_timeout_s)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return {"error": run.stderr[-2000:]}
    return {"path": f"previous ({BASELINE})", "input": "numpy", "problems": args.old_problems, **json.loads(lines[0][7:])}


def new_path(args, n_problems: int, on_device: bool) -> dict:
    import jax

    import ie_jax.mi as mi

    if on_device:
        x, y = device_pairs(n_problems, args.n, args.d)
        jax.block_until_ready((x, y))
    else:
        x, y = numpy_pairs(n_problems, args.n, args.d)
    call = lambda **kw: mi.estimate_batch(x, y, protocol="fast", steps=args.steps, **kw)
    out = {"path": "device-resident", "input": "device" if on_device else "numpy", "problems": n_problems,
           **time_calls(call, args.repeats)}
    timings = {}
    start = time.perf_counter()
    call(timings=timings)
    total = time.perf_counter() - start
    host = sum(timings.get(k, 0.0) for k in ("setup_s", "transfer_s", "format_s"))
    out.update(phases_s={k: round(v, 4) for k, v in timings.items()}, phased_call_s=total, host_s=host,
               host_fraction=host / total)
    out.setdefault("warm_call_s", total)
    out["per_problem_warm_s"] = out["warm_call_s"] / n_problems
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", default="32", help="chunk sizes P for the new path on device inputs "
                        "(it also runs the previous path's P on its numpy data)")
    parser.add_argument("--old-problems", type=int, default=4, help="P for the previous path (0 = skip it)")
    parser.add_argument("--old-package", default=None, help="folder holding the previous ie_jax (default: git archive)")
    parser.add_argument("--old-timeout-s", type=float, default=300)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--steps", type=int, default=1_500, help="the fast protocol's steps")
    parser.add_argument("--repeats", type=int, default=0, help="unsynchronised warm calls of the new path")
    parser.add_argument("--out", default="estimate_path.json")
    args = parser.parse_args()
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # old and new processes share the GPU
    runs = []
    if args.old_problems:
        runs.append(old_path(args))  # first: this process has not touched the GPU yet
        print(json.dumps(runs[-1]), flush=True)
    for on_device, n_problems in [(False, args.old_problems)] * bool(args.old_problems) + [
            (True, int(p)) for p in args.problems.split(",")]:
        runs.append(new_path(args, n_problems, on_device))
        print(json.dumps(runs[-1]), flush=True)
        write_report(args, runs)  # after every run: a timeout keeps what was measured


def write_report(args, runs):
    import jax

    device = jax.devices()[0]
    report = {"gpu": getattr(device, "device_kind", str(device)), "jax": jax.__version__,
              "python": platform.python_version(), "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
              "n_samples": args.n, "d": args.d, "steps": args.steps,
              "protocol": "fast (half-N, concat and Gaussian checks)", "runs": runs}
    old = [r for r in runs if r.get("path", "").startswith("previous") and "values_nats" in r]
    same_data = [r for r in runs if r["input"] == "numpy" and r["path"] == "device-resident"]
    if old and same_data:
        diffs = [abs(a - b) for a, b in zip(old[0]["values_nats"], same_data[0]["values_nats"])]
        report["old_vs_new_max_abs_diff_nats"] = max(diffs)
        report["speedup_warm"] = old[0]["warm_call_s"] / same_data[0]["warm_call_s"]
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
