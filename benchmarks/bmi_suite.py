"""ie_jax's MI estimators on the public benchmark of cbg-ethz/bmi ("Beyond Normal", Czyz et al., NeurIPS 2023).

The 40 tasks of `bmi.benchmark.BENCHMARK_TASKS` are sampled with bmi's own samplers (seed = task index) at
N = 5,000 and 10,000. Our estimators run on those samples (on the accelerator); bmi's CCA and KSG run beside
them on the same samples (on a CPU: they are CPU estimators, and bmi is not installed beside the accelerator). Writes benchmarks/results/bmi_suite.{json,md}: per-task values, the mean absolute error (nats) and the
number of tasks within max(0.1 nat, 10% of the truth) per estimator and N.

bmi pins jax < 0.5, so it is never a dependency of ie_jax: install it beside the project and put it on the path
only for this script (its samplers and CPU estimators import under jax 0.10):

  python -m pip install --no-deps --target /tmp/bmi benchmark-mi==0.1.3 "pydantic<2" tfp-nightly==0.26.0.dev20261027 \
      dm-tree cloudpickle gast decorator six absl-py pandas scikit-learn equinox joblib threadpoolctl narwhals \
      jaxtyping wadler-lindig

Two stages, so the accelerator needs neither bmi nor its dependencies:

  python benchmarks/bmi_suite.py sample --bmi-path /tmp/bmi      # samples -> --samples file
  python benchmarks/bmi_suite.py baselines --bmi-path /tmp/bmi   # bmi's CCA and KSG on them (CPU) -> --baselines
  python benchmarks/bmi_suite.py estimate                        # ours on the same samples -> results/bmi_suite.*
  python benchmarks/bmi_suite.py report [--merge _part2]         # adds bmi's values (and split runs' rows)

`estimate` groups the tasks by (dim_x, dim_y) and runs each group as one `mi.estimate_batch` call.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
DEFAULT_SAMPLES = Path(__file__).parent.parent / "runs" / "bmi_samples.npz"
DEFAULT_BASELINES = Path(__file__).parent.parent / "runs" / "bmi_baselines.json"
SAMPLE_SIZES = (5_000, 10_000)

def within_bar(estimate: float, true: float) -> bool:
    return abs(estimate - true) <= max(0.1, 0.1 * true)


def _import_bmi(path):
    if path:
        sys.path.insert(0, path)
    try:
        import bmi
    except ImportError as e:
        raise SystemExit(f"cannot import bmi ({e}): install it with the command in this script's docstring and "
                         "pass --bmi-path DIR") from e
    return bmi


def sample(args) -> None:
    """Sample every task with bmi at each N; save all to one .npz."""
    bmi = _import_bmi(args.bmi_path)
    tasks = list(bmi.benchmark.BENCHMARK_TASKS.values())
    arrays, meta = {}, {"tasks": [], "bmi_baselines": {}, "bmi_seconds": {}}
    for index, task in enumerate(tasks):
        meta["tasks"].append({"index": index, "name": task.name, "id": task.id, "dim_x": task.dim_x,
                              "dim_y": task.dim_y, "true_mi_nats": float(task.mutual_information)})
        for n in args.sizes:
            x, y = task.sample(n, seed=index)
            arrays[f"x_{index}_{n}"] = np.asarray(x, np.float32)
            arrays[f"y_{index}_{n}"] = np.asarray(y, np.float32)
            print(f"{index:2d} {task.id:50s} N={n:5d} true {task.mutual_information:.3f}", flush=True)
    meta.update(sizes=list(args.sizes), bmi_version="benchmark-mi 0.1.3", sample_host=platform.node(),
                sample_cpu=platform.processor() or platform.machine())
    Path(args.samples).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.samples, meta=json.dumps(meta), **arrays)
    print(f"wrote {args.samples}")


def baselines(args) -> None:
    """bmi's CCA and KSG (their defaults) on the saved samples (CPU); writes {name: {task_N: value}} to --baselines,
    after every task so that a cut-off run keeps what it finished."""
    bmi = _import_bmi(args.bmi_path)
    data = np.load(args.samples)
    meta = json.loads(str(data["meta"]))
    estimators = {"bmi CCA": bmi.estimators.CCAMutualInformationEstimator,
                  "bmi KSG": bmi.estimators.KSGEnsembleFirstEstimator}
    out = {"values": {k: {} for k in estimators}, "seconds": {k: 0.0 for k in estimators}, "host": platform.node()}
    for t in meta["tasks"]:
        for n in meta["sizes"]:
            key = f"{t['index']}_{n}"
            for name, make in estimators.items():
                start = time.perf_counter()
                out["values"][name][key] = float(make().estimate(data[f"x_{key}"], data[f"y_{key}"]))
                out["seconds"][name] += time.perf_counter() - start
            print(f"{t['index']:2d} {t['id']:50s} N={n:5d} true {t['true_mi_nats']:.3f} "
                  + " ".join(f"{k} {v[key]:.3f}" for k, v in out["values"].items()), flush=True)
            Path(args.baselines).write_text(json.dumps(out))


def report(args) -> None:
    """Add bmi's CCA and KSG values (--baselines), and the rows of the --merge tags, to results/bmi_suite{tag}.json
    and rewrite the .md."""
    path = RESULTS / f"bmi_suite{args.tag}.json"
    results = json.loads(path.read_text())
    for tag in args.merge or []:
        # Rows of a run split over calls (estimate --dims ... --tag TAG) join this table.
        part = json.loads((RESULTS / f"bmi_suite{tag}.json").read_text())
        rows = {(r["index"], r["n"]): r for r in results["rows"] + part["rows"]}
        results["rows"] = [rows[k] for k in sorted(rows)]
        results["meta"]["group_seconds"].update(part["meta"]["group_seconds"])
    found = json.loads(Path(args.baselines).read_text())
    for row in results["rows"]:
        for name, values in found["values"].items():
            value = values.get(f"{row['index']}_{row['n']}")
            if value is not None:
                row["values"][name] = value
    results["meta"]["bmi_seconds"] = found["seconds"]
    results["meta"]["bmi_baselines_ran_on"] = found["host"]
    path.write_text(json.dumps(results, indent=1))
    (RESULTS / f"bmi_suite{args.tag}.md").write_text(markdown(results["rows"], results["meta"]))
    print(markdown(results["rows"], results["meta"]))


def estimate(args) -> None:
    """Our estimators on the saved samples, one `estimate_batch` call per (dim_x, dim_y, N) group."""
    import jax

    import ie_jax.mi as mi
    from ie_jax.mi.gaussian import gaussian_copula_mi, gaussian_mi, gaussian_mi_bias_nats

    data = np.load(args.samples)
    meta = json.loads(str(data["meta"]))
    tasks = meta["tasks"]
    if args.limit:
        tasks = tasks[: args.limit]
    rows = {(t["index"], n): {"task": t["name"], "id": t["id"], "index": t["index"], "dim_x": t["dim_x"],
                              "dim_y": t["dim_y"], "n": n, "true_mi_nats": t["true_mi_nats"], "values": {}}
            for t in tasks for n in meta["sizes"] if n in args.sizes}
    for key, row in rows.items():
        for name, values in meta["bmi_baselines"].items():
            row["values"][name] = values[f"{key[0]}_{key[1]}"]
    seconds = {}
    device = jax.devices()[0]
    run_meta = {"protocol": args.protocol, "device": device.device_kind, "platform": device.platform,
                "jax": jax.__version__, "host": platform.node(), "sizes": [n for n in meta["sizes"] if n in args.sizes],
                "bmi_version": meta["bmi_version"], "bmi_baselines_ran_on": meta.get("sample_host"),
                "bmi_seconds": meta["bmi_seconds"], "group_seconds": seconds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    import os

    run_meta.update(cpu_count=os.cpu_count(), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    run_start = time.perf_counter()

    def save():
        done = [rows[k] for k in sorted(rows) if "ci95" in rows[k]]
        # end to end: loading the samples and every estimate_batch call, compilation included
        run_meta["wall_s"] = time.perf_counter() - run_start
        (RESULTS / f"bmi_suite{args.tag}.json").write_text(json.dumps({"meta": run_meta, "rows": done}, indent=1))
        (RESULTS / f"bmi_suite{args.tag}.md").write_text(markdown(done, run_meta))
        return done

    sizes = [n for n in meta["sizes"] if n in args.sizes]
    groups = sorted({(t["dim_x"], t["dim_y"], n) for t in tasks for n in sizes
                     if not args.dims or t["dim_x"] in args.dims})
    for dim_x, dim_y, n in groups:
        members = [t["index"] for t in tasks if (t["dim_x"], t["dim_y"]) == (dim_x, dim_y)]
        x = np.stack([data[f"x_{i}_{n}"] for i in members])
        y = np.stack([data[f"y_{i}_{n}"] for i in members])
        start = time.perf_counter()
        result = mi.estimate_batch(x, y, protocol=args.protocol, **({"steps": args.steps} if args.steps else {}))
        elapsed = time.perf_counter() - start
        seconds[f"{dim_x}x{dim_y} N={n}"] = elapsed
        for p, i in enumerate(members):
            r, row = result[p], rows[(i, n)]
            dg = r.diagnostics
            row["values"]["ie_jax default"] = r.value
            row["ci95"] = list(r.ci95)
            row["flags"] = list(dg.get("flags", []))
            row["selected"] = dg.get("selected")
            row["candidates"] = dg.get("candidates")
            for name, candidate in (dg.get("candidates") or {}).items():  # every candidate the default chose from
                row["values"][f"ie_jax candidate: {name}"] = candidate["value"]
            row["values"]["ie_jax Gaussian (CCA)"] = gaussian_mi(x[p], y[p])
            row["values"]["ie_jax copula, bias-corrected"] = (gaussian_copula_mi(x[p], y[p])
                                                              - gaussian_mi_bias_nats(dim_x, dim_y, n))
            print(f"{row['index']:2d} {row['id']:50s} N={n:5d} true {row['true_mi_nats']:.3f} default {r.value:.3f} "
                  f"[{r.ci95[0]:.3f}, {r.ci95[1]:.3f}] {row['selected'] or ''} flags={','.join(row['flags']) or '-'}",
                  flush=True)
        print(f"group {dim_x}x{dim_y} N={n}: {len(members)} tasks in {elapsed:.1f} s", flush=True)
        save()  # a cut-off run keeps the groups it finished
    print(markdown(save(), run_meta))


def summary(rows: list[dict], sizes) -> dict:
    """estimator -> {N: (MAE nats, tasks within the bar, tasks)} over the rows that have that estimator."""
    names = list(dict.fromkeys(k for r in rows for k in r["values"]))
    table = {}
    for name in names:
        table[name] = {}
        for n in sizes:
            pairs = [(r["values"][name], r["true_mi_nats"]) for r in rows if r["n"] == n and name in r["values"]]
            errors = [abs(v - t) for v, t in pairs]
            table[name][n] = (float(np.mean(errors)), sum(within_bar(v, t) for v, t in pairs), len(pairs))
    return table


def coverage(rows: list[dict], sizes) -> dict:
    """N -> (unflagged tasks whose 95% CI holds the truth, unflagged tasks) for the default."""
    out = {}
    for n in sizes:
        unflagged = [r for r in rows if r["n"] == n and not r.get("flags")]
        covered = sum(r["ci95"][0] <= r["true_mi_nats"] <= r["ci95"][1] for r in unflagged)
        out[n] = (covered, len(unflagged))
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    sizes = meta["sizes"]
    table = summary(rows, sizes)
    lines = [
        "# bmi benchmark suite (40 tasks of cbg-ethz/bmi, Czyz et al. 2023)",
        "",
        f"Samples: bmi's samplers ({meta['bmi_version']}), seed = task index. ie_jax ran on {meta['device']} "
        f"(JAX {meta['jax']}, protocol {meta['protocol']!r}); "
        + (f"bmi's CCA and KSG (its defaults) ran on the same samples on {meta['bmi_baselines_ran_on']} (CPU). "
           if any("bmi CCA" in r["values"] for r in rows) else "bmi's own estimators were not run for this table. ")
        + "Within = |estimate - truth| <= max(0.1 nat, 10%). Values in nats.",
        "",
        "| estimator | " + " | ".join(f"MAE N = {n:,}" for n in sizes) + " | "
        + " | ".join(f"within, N = {n:,}" for n in sizes) + " |",
        "|---|" + "---|" * (2 * len(sizes)),
    ]
    for name, per_n in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{per_n[n][0]:.3f}" for n in sizes) + " | "
                     + " | ".join(f"{per_n[n][1]}/{per_n[n][2]}" for n in sizes) + " |")
    common = [r for r in rows if all(name in r["values"] for name in table)]
    if len(common) < len(rows):
        sub = summary(common, sizes)
        where = ", ".join(f"{sum(r['n'] == n for r in common)} at N = {n:,}" for n in sizes)
        lines += ["", f"On the tasks every estimator ran ({where}), MAE " + " / ".join(f"N = {n:,}" for n in sizes) + ": " + "; ".join(f"{name} " + " / ".join(f"{sub[name][n][0]:.3f}" for n in sizes) for name in sub) + "."]
    cov = coverage(rows, sizes)
    if "wall_s" in meta:
        lines += ["", f"Our estimates took {meta['wall_s']:.0f} s end to end for {len(rows)} task runs "
                  f"({meta['wall_s'] / max(1, len(rows)):.1f} s per task; every `mi.estimate_batch` call, compilation included) "
                  f"on {meta['device']} with {meta.get('cpu_count', '?')} cores, started {meta.get('started', '?')}."]
    counts = ", ".join(f"{sum(r['n'] == n for r in rows)}/40 at N = {n:,}" for n in sizes)
    lines += ["", f"Tasks in this table: {counts} (the MAE and counts are over these tasks only).", "",
              "Default's 95% CI holds the truth on " + ", ".join(f"{c}/{t} unflagged tasks at N = {n:,}"
                                                                   for n, (c, t) in cov.items()) + ".", ""]
    names = list(table)
    lines += ["| task | N | true | " + " | ".join(names) + " | default 95% CI | choice | flags |",
              "|---|---|---|" + "---|" * (len(names) + 3)]
    for r in rows:
        cells = []
        for name in names:
            v = r["values"].get(name)
            cells.append("-" if v is None else f"{v:.3f}" + ("" if within_bar(v, r["true_mi_nats"]) else " (off)"))
        ci = r.get("ci95")
        lines.append(f"| {r['id']} | {r['n']:,} | {r['true_mi_nats']:.3f} | " + " | ".join(cells)
                     + f" | {'-' if ci is None else f'[{ci[0]:.3f}, {ci[1]:.3f}]'} | {r.get('selected') or '-'} | "
                     + f"{', '.join(r.get('flags') or []) or '-'} |")
    return "\n".join(lines) + "\n"


def tables(results: Path = RESULTS) -> dict[Path, str]:
    """results/bmi_suite.md from the committed bmi_suite.json."""
    out = {}
    for path in sorted(results.glob("bmi_suite*.json")):  # the main table and any tagged run (e.g. _cpu_5000)
        run = json.loads(path.read_text())
        out[path.with_suffix(".md")] = markdown(run["rows"], run["meta"])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("sample", "baselines", "estimate", "report"))
    parser.add_argument("--samples", default=str(DEFAULT_SAMPLES), help="the .npz of samples (written by 'sample')")
    parser.add_argument("--baselines", default=str(DEFAULT_BASELINES),
                        help="the .json of bmi's CCA and KSG values (written by 'baselines')")
    parser.add_argument("--bmi-path", default=None, help="folder bmi was installed into with pip --target")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=list(SAMPLE_SIZES))
    parser.add_argument("--protocol", default="fast")
    parser.add_argument("--merge", type=lambda s: s.split(","), default=None,
                        help="report: join the rows of results/bmi_suite{TAG}.json for these tags")
    parser.add_argument("--steps", type=int, default=None, help="override the protocol's steps (a quick trial)")
    parser.add_argument("--dims", type=lambda s: [int(v) for v in s.split(",")], default=None,
                        help="only the tasks with these dim_x (a run split over calls)")
    parser.add_argument("--limit", type=int, default=0, help="only the first LIMIT tasks (a quick trial)")
    parser.add_argument("--tag", default="", help="results file suffix, e.g. _cpu")
    args = parser.parse_args(argv)
    {"sample": sample, "baselines": baselines, "estimate": estimate, "report": report}[args.stage](args)


if __name__ == "__main__":
    main()
