"""Peers run here, on the same samples and seeds as ours: shared helpers (numpy and the standard library only, so
that every peer's virtual environment can import this file).

Workflow (issue 28, items 1 and 3); each peer runs in its own venv under /work/peer-venvs (never a dependency of
ie_jax; `benchmarks/peers/setup_venvs.sh` builds them with the versions recorded in the JSON):

  /work/peer-venvs/bmi/bin/python benchmarks/peers/sample.py          # bmi samples both suites -> runs/peers_samples.npz
  .venv/bin/python benchmarks/peers/run_ours.py                        # ie_jax default (mi.estimate, protocol 'fast')
  /work/peer-venvs/bmi/bin/python benchmarks/peers/run_bmi.py          # bmi's MINE, InfoNCE, NWJ, DV, KSG, CCA, histogram
  /work/peer-venvs/torchmist/bin/python benchmarks/peers/run_torch_mist.py
  /work/peer-venvs/latentmi/bin/python benchmarks/peers/run_latentmi.py
  /work/peer-venvs/diffmi/bin/python benchmarks/peers/run_diffusion_mi.py
  python benchmarks/peers/report.py                                     # results/peers_bmi.json -> results/peers_bmi.md

Each runner adds its estimators' rows to benchmarks/results/peers_bmi.json after every task (a cut-off run keeps
what it finished, and a rerun skips what is there), with the package versions and the settings it used (each peer's
documented defaults). Runners are meant to be run one at a time, under `nice -n 15`.

Task keys: "v1/<index>/n<N>" for bmi's 40 tasks of `bmi.benchmark.BENCHMARK_TASKS` (seed = task index, as in
benchmarks/bmi_suite.py), "v2/<index>/s<seed>/n<N>" for the 26 tasks of bmi's workflows/benchmark/v2 config.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS_JSON = ROOT / "benchmarks" / "results" / "peers_bmi.json"
SAMPLES = ROOT / "runs" / "peers_samples.npz"
N = 5_000

# Neural peers whose defaults cost minutes per task on this shared 2-core CPU run on a fixed subset of bmi's 40
# tasks: every 4th task index (1v1 normal, bimodal, asinh-Student 1x1, dense 5x5, sparse 3x3, Student 2x2 df 2,
# Student 5x5 df 3, half-cube sparse 3x3, spiral sparse 5x5, spiral normal-CDF sparse 25x25).
SUBSET_V1 = tuple(range(0, 40, 4))


def within_bar(estimate: float, true: float) -> bool:
    return abs(estimate - true) <= max(0.1, 0.1 * true)


def load_samples(path=SAMPLES):
    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    return data, meta


def task_keys(meta, suite="v1", subset=None, seeds=None, n=N):
    """[(key, task dict, seed)] in a fixed order for one suite."""
    out = []
    for t in meta["suites"][suite]:
        if subset is not None and t["index"] not in subset:
            continue
        if suite == "v1":
            out.append((f"v1/{t['index']}/n{n}", t, t["index"]))
        else:
            for s in meta["v2_seeds"]:
                if seeds is None or s in seeds:
                    out.append((f"v2/{t['index']}/s{s}/n{n}", t, s))
    return out


def xy(data, key):
    return np.asarray(data[f"x:{key}"], np.float64), np.asarray(data[f"y:{key}"], np.float64)


def load_results():
    if RESULTS_JSON.exists():
        return json.loads(RESULTS_JSON.read_text())
    return {"runs": {}, "not_installed": {}}


def save_results(results):
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS_JSON.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=False))
    os.replace(tmp, RESULTS_JSON)


def host_info():
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "load_average_at_start": load,
            "nice": os.nice(0), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def git_commit():
    """The checkout's HEAD and the last commit that changed ie_jax/ (what ours ran), plus a dirty mark."""
    def git(*a):
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=True).stdout.strip()
    try:
        head, package = git("rev-parse", "--short=12", "HEAD"), git("log", "-1", "--format=%h", "--abbrev=12", "--", "ie_jax")
        dirty = " +uncommitted changes in ie_jax/" if git("status", "--porcelain", "--", "ie_jax") else ""
        return f"{package} (ie_jax/ as of that commit; checkout HEAD {head}){dirty}"
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        return f"unknown ({e})"


def run_estimators(estimators, keys, data, *, peer, package, versions, settings, budget_s=None, notes="",
                   budget_kind=None):
    """Run each estimator over `keys` (one at a time; wall seconds per task by time.perf_counter around the whole
    call, fitting included, and the process's CPU seconds, user + system over all its threads), saving into results/peers_bmi.json after every task.

    estimators: {name: callable(x, y, seed) -> float or (float, dict of extra fields)}; settings: {name: dict of the settings used}.
    budget_s: budget per estimator in wall seconds, or in CPU seconds when budget_kind == "cpu" (this machine is
    shared: a niced run's wall time depends on the others' load); once spent, the remaining tasks are not started
    (recorded as such)."""
    for name, fn in estimators.items():
        results = load_results()
        run = results["runs"].setdefault(name, {})
        run.update(peer=peer, package=package, versions=versions, settings=settings[name], notes=notes,
                   host=host_info(), stopped_at_budget=False)
        if budget_s is not None:
            run.update(budget_s=budget_s, budget_kind=budget_kind or "wall")
        run.setdefault("results", {})
        save_results(results)
        wanted = {k for k, _, _ in keys}
        field = "cpu_seconds" if budget_kind == "cpu" else "seconds"
        spent = sum(r.get(field, 0.0) for k, r in run["results"].items() if k in wanted)
        for key, task, seed in keys:
            if key in run["results"] and "value" in run["results"][key]:
                continue
            if budget_s is not None and spent >= budget_s:
                results = load_results()
                results["runs"][name]["stopped_at_budget"] = True
                save_results(results)
                print(f"{name}: {budget_kind or 'wall'} budget {budget_s} s spent; {key} and later not run", flush=True)
                break
            x, y = xy(data, key)
            start, cpu_start = time.perf_counter(), time.process_time()
            try:
                out = fn(x, y, seed)
                extra = {}
                if isinstance(out, tuple):  # (value, extra fields to record)
                    out, extra = out
                entry = {"value": float(out), **extra}
            except Exception as e:  # noqa: BLE001 - a peer that fails on a task is recorded with its error
                entry = {"error": f"{type(e).__name__}: {e}"[:500]}
            entry["seconds"] = time.perf_counter() - start
            entry["cpu_seconds"] = time.process_time() - cpu_start  # user + system, all threads of this process
            spent += entry["cpu_seconds" if budget_kind == "cpu" else "seconds"]
            results = load_results()
            results["runs"][name]["results"][key] = entry
            save_results(results)
            truth = task["true_mi_nats"]
            shown = f"{entry['value']:.3f}" if "value" in entry else entry["error"][:120]
            print(f"{name:28s} {key:18s} {task['id'][:48]:48s} true {truth:.3f} got {shown} "
                  f"{entry['seconds']:.1f} s (cpu {entry['cpu_seconds']:.1f} s)", flush=True)


def argv_suites(argv=None):
    """--suite v1|v2|all, --seeds 0,1,2 (v2), --subset (v1: SUBSET_V1), --budget S, --only NAME,NAME."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="v1", choices=("v1", "v2", "all"))
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--subset", action="store_true", help=f"v1 tasks {SUBSET_V1} only")
    parser.add_argument("--v2-tasks", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--budget", type=float, default=None, help="wall seconds per estimator")
    parser.add_argument("--cpu-budget", type=float, default=None, help="CPU seconds per estimator (instead)")
    parser.add_argument("--only", type=lambda s: s.split(","), default=None)
    parser.add_argument("--samples", default=str(SAMPLES))
    args = parser.parse_args(argv)
    data, meta = load_samples(args.samples)
    keys = []
    if args.suite in ("v1", "all"):
        keys += task_keys(meta, "v1", subset=SUBSET_V1 if args.subset else None)
    if args.suite in ("v2", "all"):
        keys += task_keys(meta, "v2", subset=args.v2_tasks, seeds=args.seeds)
    if args.cpu_budget is not None:
        args.budget, args.budget_kind = args.cpu_budget, "cpu"
    else:
        args.budget_kind = None
    return args, data, meta, keys


def pip_versions(names):
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out
