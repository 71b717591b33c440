"""Every MI estimator of the package on blocks whose IE is known (`ie_jax.mi.ie_groundtruth`, issue 27).

Each task of `standard_suite(sizes)` is sampled once (N sequences, `--seed`); its 1 + T MI problems, stacked as
xs, ys [1 + T, N, d] = [macro, micro_0..micro_{T-1}], go through `ie_jax.mi.get_estimator(name, **settings)` and
its `estimate_settings(xs, ys)` (tasks of the same width and input kind share one call: problem p's result does
not depend on its neighbours). For every (task, estimator setting, term: macro / micro mean / IE) the table
gives the truth, the estimate with its 95% CI (micro mean and IE combined by `ie_jax.ie.result`), the flags
and a verdict:
  within     |estimate - truth| <= max(0.1 nat, 10% of |truth|), and the CI holds the truth or a flag is set;
  flagged    outside the bar, with a flag that says the value is not a measurement (a lower bound, saturated,
             above the ceiling, unverified: every flag but `constant`);
  WRONG      confidently wrong, unflagged: "WRONG value" outside the bar, "WRONG CI" within it but with a CI that
             excludes the truth;
  I_sigma    noise estimator on a task without a closed-form I_sigma: below the MI (as I_sigma <= MI by data
             processing), a coarser quantity, not judged;
  refused    the estimator declined the problem (e.g. exact_discrete on continuous states), no number.
The noise estimator's truth is the closed-form I_sigma where the task has one (`noise_truth`), else the MI.

Estimators are named on the command line: presets below, or any `get_estimator` name with its defaults, with
settings merged from --set LABEL='{"key": value}':

  nice -n 15 python benchmarks/ie_groundtruth.py --sizes small,medium --n 2000 \\
      --set neural-fast='{"steps": 300}' --tag cpu
  python benchmarks/ie_groundtruth.py --estimators exact_discrete,noise,new_default   # a later estimator

Writes benchmarks/results/ie_groundtruth{_TAG}.json and .md (the table, written from the JSON by `markdown`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
# A placeholder setting filled per task group: whether its inputs are discrete tokens (as `ie_jax.ie.measure` passes).
DISCRETE = "<task.discrete>"
PRESETS = {
    "exact_discrete": ("exact_discrete", {"discrete": DISCRETE}),
    "noise": ("noise", {"sigma": [0.1, 0.3, 1.0, 3.0, 10.0]}),
    "gaussian": ("gaussian", {}),
    "neural-fast": ("neural", {"protocol": "fast"}),  # the default: chooses among copula, KSG, radial, neural
    "neural-fast-noselect": ("neural", {"protocol": "fast", "select": False}),  # the neural critic alone
    "neural-paper": ("neural", {"protocol": "paper"}),
    # `ie-jax measure` with no estimator arguments: the noise estimator over DEFAULT_SIGMAS, judged at the sigma the
    # sweep would report for the task (the smallest with a measured IE) and at the finest sigma of the grid
    "default": ("noise", {}),
}
DEFAULT_ESTIMATORS = tuple(PRESETS)
TERMS = ("macro", "micro mean", "IE")
VERDICTS = ("within", "flagged", "WRONG value", "WRONG CI", "I_sigma", "refused")
WRONG = ("WRONG value", "WRONG CI")
BAR_NATS, BAR_FRACTION = 0.1, 0.1
# Every flag but `constant` (an exact 0) says the value is not a measurement.
NOT_MEASURED_FLAGS = ("saturated", "sample_limited", "critic_limited", "overfit", "no_fit", "heldout_negative",
                      "still_increasing", "nan_step", "above_ceiling", "unverified", "sample_specific")


def bar(truth: float) -> float:
    return max(BAR_NATS, BAR_FRACTION * abs(truth))


def verdict(value, ci, truth: float, flags, *, below_is_coarser: bool) -> tuple[str, str]:
    """(verdict, reason) of one term; value None: refused. below_is_coarser: a noise estimate on a task without a
    closed-form I_sigma, judged against the MI, which I_sigma never exceeds."""
    if value is None:
        return "refused", "no estimate"
    within = abs(value - truth) <= bar(truth)
    flagged = any(f in NOT_MEASURED_FLAGS for f in flags)
    ci_holds = not (np.isfinite(ci[0]) and np.isfinite(ci[1])) or ci[0] - 1e-9 <= truth <= ci[1] + 1e-9
    if within and (ci_holds or flagged):
        return "within", ""
    if flagged:
        return "flagged", ", ".join(f for f in flags if f in NOT_MEASURED_FLAGS)
    if below_is_coarser and value < truth:
        return "I_sigma", "below the MI (I_sigma <= MI)"
    return ("WRONG CI", "within the bar, but the CI excludes the truth, unflagged") if within else \
        ("WRONG value", "outside the bar, unflagged")


def parse_settings(args) -> dict[str, tuple[str, dict]]:
    """label -> (get_estimator name, settings) from --estimators and --set."""
    overrides = {}
    for item in args.set or []:
        label, _, text = item.partition("=")
        overrides[label] = json.loads(text)
    out = {}
    for label in args.estimators:
        name, settings = PRESETS.get(label, (label, {}))
        out[label] = (name, {**settings, **overrides.get(label, {})})
    unused = set(overrides) - set(out)
    if unused:
        raise SystemExit(f"--set for estimator(s) not run: {sorted(unused)}")
    return out


def _concrete(settings: dict, discrete: bool) -> dict:
    return {k: (discrete if v == DISCRETE else (tuple(v) if isinstance(v, list) else v)) for k, v in settings.items()}


def run_estimator(name: str, settings: dict, xs, ys, discrete: bool):
    """(setting labels, setting params, per-setting MIEstimates) or the refusal's message. Every estimate gets the
    ceilings and flags a sweep adds (`ie_jax.mi.ceilings.annotate_counts` on the distinct states of x and y), so
    each is judged as `ie-jax measure` would print it."""
    from ie_jax.mi import get_estimator
    from ie_jax.mi.ceilings import annotate_counts, state_counts
    from ie_jax.mi.result import MIEstimates

    try:
        est = get_estimator(name, **_concrete(settings, discrete))
        rows = est.estimate_settings(xs, ys)
    except ValueError as e:
        return str(e)
    counts = list(zip(state_counts(xs), state_counts(ys)))
    rows = [MIEstimates.stack([annotate_counts(e, cx, cy) for e, (cx, cy) in zip(row, counts)]) for row in rows]
    return est.settings, est.setting_params, rows


def term_rows(estimates, seq_len: int) -> dict[str, dict]:
    """macro, micro mean and IE of one task's 1 + T estimates, errors carried as `ie_jax.ie.result` does."""
    from ie_jax.ie.result import linear_combination

    values = np.array([e.value for e in estimates])
    stderrs = np.array([e.stderr for e in estimates])
    lows, highs = np.array([e.ci95[0] for e in estimates]), np.array([e.ci95[1] for e in estimates])
    weights = {"macro": np.r_[1.0, np.zeros(seq_len)], "micro mean": np.r_[0.0, np.full(seq_len, 1.0 / seq_len)],
               "IE": np.r_[1.0, np.full(seq_len, -1.0 / seq_len)]}
    used = {"macro": [0], "micro mean": range(1, seq_len + 1), "IE": range(seq_len + 1)}
    out = {}
    for term, w in weights.items():
        value, stderr, low, high = linear_combination(w, values, stderrs, lows, highs)
        dgs = [estimates[i].diagnostics for i in used[term]]
        out[term] = {
            "estimate": float(value), "stderr": float(stderr), "ci95": [float(low), float(high)],
            "flags": sorted({f for d in dgs for f in d.get("flags", [])}),
            "selected": sorted({d["selected"] for d in dgs if d.get("selected")}),
            "ceiling_nats": [d.get("ceiling_nats") for d in dgs],
            "saturated": [bool(d.get("saturated")) for d in dgs],
        }
    return out


def task_truths(task, name: str, params: dict) -> tuple[dict, str]:
    """Per term truth (nats) for this estimator setting, and what it is."""
    if name == "noise" and hasattr(task, "noise_truth"):
        truth, kind = task.noise_truth(params["sigma"]), "I_sigma (closed form)"
    else:
        truth, kind = task.truth, "MI"
    return {"macro": truth.macro_nats, "micro mean": truth.micro_mean_nats, "IE": truth.ie_nats}, kind


def run(args) -> dict:
    import jax

    from ie_jax.mi.ie_groundtruth import standard_suite

    estimators = parse_settings(args)
    suite = standard_suite(args.sizes)
    samples, groups = {}, {}
    start = time.perf_counter()
    for name, task in suite.items():
        samples[name] = task.sample(args.seed, args.n).problems()
        groups.setdefault((task.dim, task.discrete), []).append(name)
    sample_s = time.perf_counter() - start
    rows, timing = [], {}
    sizes_for = {label: sizes.split(",") for label, _, sizes in (item.partition("=") for item in args.sizes_for or [])}
    for label, (est_name, settings) in estimators.items():
        timing[label] = {"wall_s": 0.0, "cpu_s": 0.0}
        for (dim, discrete), all_names in groups.items():
            names = [n for n in all_names if n.split("/")[0] in sizes_for.get(label, args.sizes)]
            if not names:
                continue
            xs = np.concatenate([samples[n][0] for n in names])
            ys = np.concatenate([samples[n][1] for n in names])
            wall, cpu = time.perf_counter(), time.process_time()
            result = run_estimator(est_name, settings, xs, ys, discrete)
            timing[label]["wall_s"] += time.perf_counter() - wall
            timing[label]["cpu_s"] += time.process_time() - cpu
            offset = 0
            for n in names:
                task = suite[n]
                p = 1 + task.seq_len
                if isinstance(result, str):
                    rows += refused_rows(n, task, label, est_name, result)
                else:
                    judged = [judged_rows(n, task, label, est_name, setting if len(result[0]) > 1 else label, params,
                                          [estimates[i] for i in range(offset, offset + p)])
                              for setting, params, estimates in zip(*result)]
                    # one setting: the command line's label (two neural presets share "neural fast")
                    rows += _reported(judged) if label == "default" else [r for j in judged for r in j]
                offset += p
            print(f"{label} d={dim} {'tokens' if discrete else 'continuous'}: {len(names)} tasks, "
                  f"{timing[label]['wall_s']:.1f} s so far", flush=True)
    meta = {
        "n": args.n, "seed": args.seed, "sizes": list(args.sizes),
        "sizes_for": {label: sizes_for.get(label, list(args.sizes)) for label in estimators},
        "estimators": {label: {"name": n, "settings": s, **_protocol_steps(n, s)} for label, (n, s) in estimators.items()},
        "tasks": {n: {"kind": type(t).__name__, "params": _params(t), "seq_len": t.seq_len, "dim": t.dim,
                      "discrete": t.discrete} for n, t in suite.items()},
        "bar": f"max({BAR_NATS} nat, {BAR_FRACTION:.0%} of |truth|)",
        "sample_s": sample_s, "timing": timing, "argv": sys.argv[1:],
        "jax": jax.__version__, "numpy": np.__version__, "device": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform, "host": platform.node(), "machine": _machine(),
        "commit": _commit(),
    }
    return {"meta": meta, "rows": rows}


def _protocol_steps(name: str, settings: dict) -> dict:
    """A neural protocol's own number of steps, where the settings change it (reduced for a CPU)."""
    from ie_jax.mi.protocols import PROTOCOLS

    if name != "neural" or "steps" not in settings:
        return {}
    return {"protocol_steps": PROTOCOLS[settings.get("protocol", "fast")]["steps"]}


def _params(task) -> dict:
    return dataclasses.asdict(task)


def _row(name, task, label, est_name, setting, term) -> dict:
    return {"task": name, "size": name.split("/")[0], "estimator": label, "name": est_name, "setting": setting,
            "term": term}


def refused_rows(name, task, label, est_name, message) -> list[dict]:
    truths = {"macro": task.mi_macro_nats, "micro mean": float(np.mean(task.mi_micro_nats)), "IE": task.ie_nats}
    return [{**_row(name, task, label, est_name, label, term), "truth_nats": truths[term], "truth_kind": "MI",
             "estimate": None, "verdict": "refused", "reason": message} for term in TERMS]


def judged_rows(name, task, label, est_name, setting, params, estimates) -> list[dict]:
    truths, kind = task_truths(task, est_name, params)
    terms = term_rows(estimates, task.seq_len)
    coarser = est_name == "noise" and kind == "MI"
    out = []
    for term in TERMS:
        t = terms[term]
        # I_sigma <= MI orders the terms, not their difference: IE(sigma) is not judged where a term is coarser
        v, reason = verdict(t["estimate"], t["ci95"], truths[term], t["flags"], below_is_coarser=coarser and term != "IE")
        if coarser and term == "IE" and "I_sigma" in (out[0]["verdict"], out[1]["verdict"]) and v in WRONG:
            v, reason = "I_sigma", "a term is I_sigma, below its MI"
        out.append({**_row(name, task, label, est_name, setting, term), "truth_nats": truths[term],
                    "truth_kind": kind, **t, "verdict": v, "reason": reason})
    return out


def _reported(judged: list[list[dict]]) -> list[dict]:
    """The default's rows of one task: at the finest sigma of its grid, and at the sigma a sweep would report (the
    smallest whose IE is a measurement: no term flagged), each labelled so."""
    measured = [j for j in judged if not any(f in NOT_MEASURED_FLAGS for f in j[2]["flags"])]
    picks = [("finest", judged[0])] + ([("reported", measured[0])] if measured else [])
    return [{**r, "setting": f"default, {which}: {r['setting']}"} for which, rows in picks for r in rows]


def _commit() -> str:
    here = Path(__file__).parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ie_jax"], cwd=here.parent, capture_output=True,
                               text=True).stdout.strip()
        return rev + (" (ie_jax modified)" if dirty else "")
    except OSError:
        return "unknown"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def summary(rows: list[dict]) -> dict[str, dict[str, int]]:
    """setting -> verdict -> number of terms."""
    out = {}
    for r in rows:
        out.setdefault(r["setting"], {v: 0 for v in VERDICTS})[r["verdict"]] += 1
    return out


def _fmt(v, digits=3) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def markdown(results: dict) -> str:
    meta, rows = results["meta"], results["rows"]
    lines = [
        "# IE ground truth: every estimator on blocks whose IE is known (issue 27)",
        "",
        f"Tasks: `ie_jax.mi.ie_groundtruth.standard_suite({meta['sizes']})`, N = {meta['n']:,} sequences, seed "
        f"{meta['seed']}. Ran on {meta['machine']} ({meta['platform']}, JAX {meta['jax']}), commit {meta['commit']}. "
        f"Values in nats; bar = {meta['bar']}. Micro mean and IE combine the 1 + T estimates with their CIs in "
        "quadrature (`ie_jax.ie.result`). The noise estimator is judged against the closed-form I_sigma where "
        "the task has one (linear-Gaussian), else against the MI.",
        "",
        "Verdicts: within = inside the bar (and the CI holds the truth, or a flag is set); flagged = outside, with "
        "a flag that says it is not a measurement; **WRONG value** = confidently wrong: outside the bar and "
        "unflagged; **WRONG CI** = within the bar, unflagged, but the CI excludes the truth; I_sigma = a noise value below the MI on a task without "
        "a closed-form I_sigma (a coarser quantity, not judged); refused = no number.",
        "",
        "Estimators: " + "; ".join(f"`{label}` = get_estimator({e['name']!r}"
                                   + "".join(f", {k}={v!r}" for k, v in e["settings"].items()) + ")"
                                   + (f" (reduced from the protocol's {e['protocol_steps']:,} steps)"
                                      if "protocol_steps" in e else "")
                                   + f" on {'/'.join(meta['sizes_for'][label])}"
                                   for label, e in meta["estimators"].items()) + ".",
        "",
        "| estimator setting | " + " | ".join(VERDICTS) + " | terms | estimator seconds, all its settings (wall / CPU) |",
        "|---|" + "---|" * (len(VERDICTS) + 2),
    ]
    seconds = {}
    for r in rows:
        seconds.setdefault(r["setting"], r["estimator"])
    for setting, counts in summary(rows).items():
        t = meta["timing"][seconds[setting]]
        lines.append(f"| {setting} | " + " | ".join(str(counts[v]) for v in VERDICTS)
                     + f" | {sum(counts.values())} | {t['wall_s']:.0f} / {t['cpu_s']:.0f} |")
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    for name, task_rows in by_task.items():
        info = meta["tasks"][name]
        truth = {r["term"]: r["truth_nats"] for r in task_rows if r["truth_kind"] == "MI"}
        lines += ["", f"## {name}", "",
                  f"{info['kind']}, T = {info['seq_len']}, d = {info['dim']}, "
                  f"{'token' if info['discrete'] else 'continuous'} inputs. MI truths: macro {_fmt(truth.get('macro'))}, "
                  f"micro mean {_fmt(truth.get('micro mean'))}, IE {_fmt(truth.get('IE'))}; ln N = "
                  f"{math.log(meta['n']):.3f}.", "",
                  "| estimator | term | truth | estimate [95% CI] | ceiling | choice | flags | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in task_rows:
            if r["estimate"] is None:
                cell = "-"
            else:
                cell = f"{r['estimate']:.3f} [{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}]"
            mark = f"**{r['verdict']}**" if r["verdict"] in WRONG else r["verdict"]
            reason = f" ({r['reason']})" if r["reason"] and r["verdict"] != "flagged" else ""
            if r["verdict"] == "refused":
                reason = f" ({r['reason'].split(':')[0]})"
            truth_cell = _fmt(r["truth_nats"]) + (" (I_sigma)" if r["truth_kind"] != "MI" else "")
            ceilings = [c for c in r.get("ceiling_nats") or [] if c is not None]
            lines.append(f"| {r['setting']} | {r['term']} | {truth_cell} | {cell} | {_fmt(min(ceilings), 2) if ceilings else '-'} "
                         f"| {', '.join(r.get('selected') or []) or '-'} "
                         f"| {', '.join(r.get('flags') or []) or '-'} | {mark}{reason} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    split = lambda s: [v for v in s.split(",") if v]
    parser.add_argument("--sizes", type=split, default=["small", "medium"], help="suite sizes: small,medium,sweep")
    parser.add_argument("--n", type=int, default=2000, help="sequences per task")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--estimators", type=split, default=list(DEFAULT_ESTIMATORS),
                        help=f"labels: presets {list(PRESETS)} or any get_estimator name (its defaults)")
    parser.add_argument("--set", action="append", metavar="LABEL=JSON",
                        help="settings merged into an estimator's, e.g. neural-fast='{\"steps\": 300}'")
    parser.add_argument("--sizes-for", action="append", metavar="LABEL=SIZES",
                        help="run an estimator on some sizes only, e.g. neural-paper=small")
    parser.add_argument("--tag", default="", help="results file suffix: ie_groundtruth_TAG.json")
    parser.add_argument("--report", action="store_true", help="only rewrite the .md from the JSON")
    args = parser.parse_args(argv)
    path = RESULTS / f"ie_groundtruth{'_' + args.tag if args.tag else ''}.json"
    if args.report:
        results = json.loads(path.read_text())
    else:
        results = run(args)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1, default=float))
    path.with_suffix(".md").write_text(markdown(results))
    print(markdown(results).split("\n## ")[0])


if __name__ == "__main__":
    main()
