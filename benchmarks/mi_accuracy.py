"""Accuracy of MI estimators on problems with known MI (issue 2's table).

For each task (family, d, true MI) it reports the neural estimate of a protocol (default "fast") with
its 95% CI and diagnostics, and the Gaussian closed form (CCA) on the same samples. A row passes when
|estimate - true| <= max(0.1 nat, 10% of true), or the diagnostics flag it (saturated, sample_limited,
critic_limited, overfit, no_fit, heldout_negative, still_increasing: then the estimate says it is a lower bound only) and
it is not above the truth. The summary line also counts the rows without any flag that miss the bar:
those are the estimator's silent failures.

Target (issue 16): every row whose truth is below ln(N_test) - 1 within the bar outright; every row above it
flagged and not above the truth (the "target" column).

All problems of one d (every family) run as one `estimate_batch` call (one compiled program).
Writes benchmarks/results/mi_accuracy_<tag>.json and .md.

  python benchmarks/mi_accuracy.py                       # the full table (GPU: d = 32..768, MI 0..20)
  python benchmarks/mi_accuracy.py --dims 32 --mis 0,1,2,5,10 --tag cpu_reduced   # what runs on a CPU
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import jax
import numpy as np

import ie_jax.mi as mi
from ie_jax.mi import groundtruth as gt
from ie_jax.mi.protocols import resolve
from ie_jax.mi.gaussian import gaussian_copula_mi, gaussian_mi, gaussian_mi_bias_nats

RESULTS = Path(__file__).parent / "results"


def tasks(family: str, dim: int, mis: list[float]):
    """(name, sampler) pairs of one family at one dimension."""
    if family == "gaussian":
        return [(f"gaussian d={dim} I={m:g}", gt.correlated_gaussian(dim, m) if m > 0 else gt.independent(dim))
                for m in mis]
    if family == "rotated":
        return [(f"rotated d={dim} I={m:g}", gt.rotated_gaussian(dim, m) if m > 0 else gt.independent(dim))
                for m in mis]
    if family == "sparse":
        k = max(1, dim // 8)
        return [(f"sparse d={dim} k={k} I={m:g}", gt.sparse_gaussian(dim, k, m) if m > 0 else gt.independent(dim))
                for m in mis]
    if family == "cubic":
        return [(f"cubic d={dim} I={m:g}", gt.Transformed(gt.correlated_gaussian(dim, m), gt.Cubic(), gt.Cubic()))
                for m in mis if m > 0]
    if family == "spiral":
        speed = 1.0 / math.sqrt(2 * dim)  # about a one-radian twist across samples
        return [(f"spiral d={dim} I={m:g}", gt.Transformed(gt.correlated_gaussian(dim, m), gt.Spiral(speed), None))
                for m in mis if m > 0]
    if family == "mixture":
        return [(f"mixture d={dim} K={k}", gt.DiscreteMixture(k, dim, dim)) for k in (4, 16, 64)]
    raise ValueError(f"unknown family {family!r}")


DIAGNOSTICS_KEPT = ("train_test_gap", "readout_step", "value_half_n_nats", "gain_from_doubling_n_nats",
                    "gain_stderr_nats", "value_other_critic_nats", "other_critic_gain_nats",
                    "other_critic_gain_stderr_nats", "value_gaussian_critic_nats", "gaussian_critic_gain_nats",
                    "gaussian_critic_gain_stderr_nats", "gaussian_critic_shrinkage", "still_increasing", "overfit")


def within_bar(estimate: float, true: float) -> bool:
    return abs(estimate - true) <= max(0.1, 0.1 * true)


def run(args, save) -> list[dict]:
    """All tasks; `save(rows)` after every d, so a cut-off run keeps what it finished."""
    rows = []
    for dim in args.dims:
        group = [(family, name, sampler) for family in args.families for name, sampler in tasks(family, dim, args.mis)]
        if group:
            samples = [s.sample(args.data_seed, args.n) for _, _, s in group]
            x = np.stack([s[0] for s in samples])
            y = np.stack([s[1] for s in samples])
            start = time.perf_counter()
            overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size)) if v is not None}
            neural = mi.estimate_batch(x, y, protocol=args.protocol, seeds=tuple(args.seeds), **overrides)
            seconds = time.perf_counter() - start
            n_test = int(round(args.n * resolve(args.protocol, {})[1]["test_fraction"]))
            verifiable = math.log(n_test) - 1.0
            for p, (family, name, sampler) in enumerate(group):
                true = float(sampler.mi_nats)
                r = neural[p]
                dg = r.diagnostics
                flags = list(dg.get("flags", ["saturated"] if dg["saturated"] else []))
                closed = gaussian_mi(x[p], y[p])
                # The estimator-free baseline at its best: rank-Gaussianised (copula) and Wishart-bias-corrected.
                copula = gaussian_copula_mi(x[p], y[p]) - gaussian_mi_bias_nats(dim, dim, args.n)
                rows.append({
                    "task": name, "family": family, "d": dim, "n": args.n, "true_mi_nats": true,
                    "estimator": f"{args.protocol}:{r.estimator}", "value_nats": r.value, "ci95_nats": list(r.ci95),
                    "within_bar": within_bar(r.value, true), "saturated": bool(dg["saturated"]), "flags": flags,
                    "ceiling_nats": dg["ceiling_nats"],
                    # A flagged estimate says it is a lower bound only: it passes if it is not above the truth.
                    "passes": within_bar(r.value, true) or (bool(flags) and r.value <= true + max(0.1, 0.1 * true)),
                    # issue 16's target: outright below ln(N_test) - 1; above it, flagged and not above the truth
                    "meets_target": (within_bar(r.value, true) if true < verifiable
                                     else bool(flags) and r.value <= true + max(0.1, 0.1 * true)),
                    "selected": dg.get("selected"), "selection_note": dg.get("selection_note"),
                    "candidates": dg.get("candidates"), "neural_flags": dg.get("neural_flags"),
                    "diagnostics": {k: dg.get(k) for k in DIAGNOSTICS_KEPT},
                    "gaussian_closed_form_nats": closed, "gaussian_within_bar": within_bar(closed, true),
                    "copula_corrected_nats": copula, "copula_within_bar": within_bar(copula, true),
                    "group_seconds": seconds,
                })
                print(f"{name:28s} true {true:6.2f}  {args.protocol} {r.value:6.2f} "
                      f"[{r.ci95[0]:6.2f}, {r.ci95[1]:6.2f}] flags={','.join(flags) or '-':30s} gauss {closed:6.2f}  "
                      f"({seconds:.0f} s/group)", flush=True)
            save(rows)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# MI accuracy ({meta['protocol']} protocol, N = {meta['n']}, seeds {meta['seeds']})",
        "",
        f"Device: {meta['device']}; JAX {meta['jax']}. Pass = within max(0.1 nat, 10%) of the true MI, or flagged "
        "(saturated, sample_limited, critic_limited, overfit, no_fit, heldout_negative, still_increasing: a lower bound only, "
        "so it passes when not above the truth). The Gaussian closed form is the CCA plug-in on the same samples; "
        "the copula column ranks each coordinate to normal scores first and subtracts the exact Gaussian "
        "(Wishart) bias of the plug-in at this N and d.",
        "",
        "The Gaussian critic column is the fast protocol's check: the closed-form Gaussian log density ratio "
        "fitted on the training pairs, its DV bound on the same held-out batches (a lower bound, not the readout).",
        "",
        "Target (issue 16): a row whose truth is below ln(N_test) - 1 within the bar outright; above it, flagged "
        "and not above the truth. Choice: the candidate the selection default reported (`ie_jax.mi.selection`).",
        "",
    ]
    lines += summary_table(rows) + [
        "",
        "| task | true MI | estimate [95% CI] | choice | flags | within bar | pass | target | Gaussian critic "
        "| Gaussian closed form | copula, bias-corrected |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = r.get("meets_target")
        lines.append(
            f"| {r['task']} | {r['true_mi_nats']:.2f} | {r['value_nats']:.2f} [{r['ci95_nats'][0]:.2f}, "
            f"{r['ci95_nats'][1]:.2f}] | {r.get('selected') or '-'} | {', '.join(r['flags']) or '-'} | "
            f"{'yes' if r['within_bar'] else 'no'} | "
            f"{'yes' if r['passes'] else '**no**'} | {'-' if target is None else 'yes' if target else '**no**'} | "
            f"{_fmt(r['diagnostics'].get('value_gaussian_critic_nats'))} | "
            f"{r['gaussian_closed_form_nats']:.2f}"
            f"{'' if r['gaussian_within_bar'] else ' (off)'} | {r['copula_corrected_nats']:.2f}"
            f"{'' if r['copula_within_bar'] else ' (off)'} |")
    passed = sum(r["passes"] for r in rows)
    within = sum(r["within_bar"] for r in rows)
    unflagged = [r for r in rows if not r["flags"]]
    trusted = sum(r["within_bar"] for r in unflagged)
    copula = sum(r.get("copula_within_bar", False) for r in rows)
    targets = [r["meets_target"] for r in rows if "meets_target" in r]
    lines += ["", f"{sum(targets)}/{len(targets)} rows meet issue 16's target; " if targets else "",
              f"{passed}/{len(rows)} rows pass; {within}/{len(rows)} are within the bar outright; "
              f"{len(unflagged)} rows carry no flag and {trusted} of them are within the bar; the bias-corrected "
              f"copula baseline is within the bar on {copula}/{len(rows)}. Values in nats."]
    return "\n".join(lines) + "\n"


def summary_table(rows: list[dict]) -> list[str]:
    """One row per family and d: how many rows are within the bar, pass, meet the target, carry no flag; the range
    of the estimates and truths; the candidates reported; and the seconds of estimation in all."""
    lines = ["| family | d | rows | true MI | estimate | within bar | pass | target | no flag | reported |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    span = lambda values: f"{min(values):.1f}" if f"{min(values):.1f}" == f"{max(values):.1f}" else \
        f"{min(values):.1f} to {max(values):.1f}"  # noqa: E731
    count = lambda group, key: f"{sum(bool(r.get(key)) for r in group)}/{len(group)}"  # noqa: E731
    for family, d in dict.fromkeys((r["family"], r["d"]) for r in rows):
        group = [r for r in rows if (r["family"], r["d"]) == (family, d)]
        target = count(group, "meets_target") if "meets_target" in group[0] else "-"
        lines.append(f"| {family} | {d} | {len(group)} | {span([r['true_mi_nats'] for r in group])} | "
                     f"{span([r['value_nats'] for r in group])} | {count(group, 'within_bar')} | "
                     f"{count(group, 'passes')} | "
                     f"{target} | {sum(not r['flags'] for r in group)}/{len(group)} | "
                     f"{', '.join(sorted({r.get('selected') or '-' for r in group}))} |")
    # one estimate_batch call per d since the selection default (all families together), per (family, d) before
    calls = {(r["d"],) if "meets_target" in r else (r["family"], r["d"]): r["group_seconds"] for r in rows}
    return lines + ["", f"Estimation: {sum(calls.values()):.0f} s in all ({len(calls)} `estimate_batch` calls)."]


def tables(results: Path = RESULTS) -> dict[Path, str]:
    """results/mi_accuracy_<tag>.md from each committed mi_accuracy_<tag>.json."""
    out = {}
    for path in sorted(results.glob("mi_accuracy_*.json")):
        run = json.loads(path.read_text())
        out[path.with_suffix(".md")] = markdown(run["rows"], run["meta"])
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    floats = lambda s: [float(v) for v in s.split(",")]
    ints = lambda s: [int(v) for v in s.split(",")]
    parser.add_argument("--protocol", default="fast")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dims", type=ints, default=[32, 128, 768])
    parser.add_argument("--mis", type=floats, default=[0, 1, 2, 5, 10, 20])
    parser.add_argument("--families", type=lambda s: s.split(","),
                        default=["gaussian", "rotated", "sparse", "cubic", "spiral", "mixture"])
    parser.add_argument("--seeds", type=ints, default=[0])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the protocol's steps")
    parser.add_argument("--batch-size", type=int, default=None, help="override the protocol's batch size")
    parser.add_argument("--tag", default=None, help="results file suffix (default: the device platform)")
    parser.add_argument("--merge", type=lambda s: s.split(","), default=None,
                        help="only merge the results of these tags (runs split over GPUs) into --tag")
    args = parser.parse_args(argv)
    if args.merge:
        parts = [json.loads((RESULTS / f"mi_accuracy_{t}.json").read_text()) for t in args.merge]
        meta = {**parts[0]["meta"], "merged_from": args.merge,
                "families": [f for part in parts for f in part["meta"]["families"]]}
        rows = [r for part in parts for r in part["rows"]]
        (RESULTS / f"mi_accuracy_{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (RESULTS / f"mi_accuracy_{args.tag}.md").write_text(markdown(rows, meta))
        print(markdown(rows, meta))
        return
    meta = {"protocol": args.protocol, "n": args.n, "seeds": args.seeds, "device": jax.devices()[0].device_kind,
            "platform": jax.devices()[0].platform, "jax": jax.__version__, "host": platform.node(),
            "steps": args.steps, "batch_size": args.batch_size, "dims": args.dims, "mis": args.mis,
            "families": args.families}
    tag = args.tag or meta["platform"]
    RESULTS.mkdir(parents=True, exist_ok=True)

    def save(rows):
        (RESULTS / f"mi_accuracy_{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (RESULTS / f"mi_accuracy_{tag}.md").write_text(markdown(rows, meta))

    rows = run(args, save)
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
