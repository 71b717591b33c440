"""`ie-jax measure` with no estimator arguments, run as a user runs it, and its printed numbers audited.

For every run: the wall time of the whole CLI process, what it printed, and for every (data, layer) of the
reported setting whether the IE is a measurement. The audit reads each result.json and counts
  - printed_with_flagged_term: layers whose IE is a number although a term is flagged saturated, above its
    ceiling, unverified, a lower bound or sample-specific (must be 0: such an IE is a bound or n/a);
  - measured: layers whose IE is a number (both terms measured), per data set, at the reported sigma;
  - exact_terms_flagged: terms exact by counting over covered discrete states that carry a saturation flag
    (must be 0: an exact term is not flagged so).
Appends one record per run to --results (JSON list) and writes the table beside it (.md).

  python benchmarks/default_measure.py --name cpu-default --model default --data icl:country --data text:kjv \
      --samples 1000 --layers 0,10,20,29 --results benchmarks/results/default_measure_ie_cpu.json
  python benchmarks/default_measure.py --name h100-gpt2-gaussian --model random:gpt2 --data gaussian \
      --samples 20000 --results benchmarks/results/default_measure_ie_gpu.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
NOT_MEASURED = ("saturated", "above_ceiling", "unverified", "sample_specific", "sample_limited", "critic_limited",
                "overfit", "no_fit", "heldout_negative", "still_increasing")


def audit(run_dir: pathlib.Path) -> dict:
    """The audit of one result directory (see the module docstring)."""
    from ie_jax.ie.result import IEResult

    r = IEResult.from_json(run_dir)
    layers = []
    printed_flagged = exact_flagged = 0
    for l, layer in enumerate(r.layers):
        terms = [r.macro_estimates()[l].diagnostics] + [e.diagnostics for e in r.micro_estimates()[l]]
        flagged = sorted({f for d in terms for f in d.get("flags", []) if f in NOT_MEASURED})
        printed_flagged += bool(r.ie_measured[l] and flagged)
        exact_flagged += sum(bool(d.get("covered") and d.get("saturated")) for d in terms)
        layers.append({"layer": layer, "ie": None if not r.ie_measured[l] else float(r.ie[l]),
                       "text": r.ie_text(3)[l], "bound": r.ie_bound[l], "flags": flagged,
                       "macro": float(r.mi_macro[l]), "micro_mean": float(r.mi_micro_mean[l])})
    per_setting = [int(r.select(i).ie_measured.sum()) for i in range(len(r.settings))]
    return {"data": r.metadata.get("data", {}).get("spec"), "n_samples": r.metadata.get("n_samples"),
            "reported": r.setting, "reason": r.metadata.get("selected_setting", {}).get("reason"),
            "measured": int(r.ie_measured.sum()), "n_layers": len(r.layers),
            "printed_with_flagged_term": printed_flagged, "exact_terms_flagged": exact_flagged,
            "measured_per_setting": dict(zip(r.settings, per_setting)), "layers": layers,
            "totals": r.totals_text(), "timing_s": r.metadata.get("timing_s"), "devices": r.metadata.get("devices"),
            "versions": r.metadata.get("versions")}


def run(args) -> dict:
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="ie_default_"))
    command = [sys.executable, "-m", "ie_jax.cli", "measure", "--model", args.model, "--samples", str(args.samples),
               "--out", str(out)] + [a for d in args.data for a in ("--data", d)]
    if args.layers:
        command += ["--layers", args.layers]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"ie-jax measure failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    dirs = sorted({p.parent for p in out.rglob("result.json")})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    return {"name": args.name, "command": "ie-jax " + " ".join(command[3:]), "wall_s": wall,
            "printed": [line for line in done.stdout.splitlines() if not line.startswith("capture")],
            "runs": [audit(d) for d in dirs], "commit": commit.strip(), "machine": platform.node(),
            "date": time.strftime("%Y-%m-%d")}


def table(records: list[dict]) -> str:
    """Markdown table of the audit records (written beside the JSON)."""
    lines = ["| run | data | N | reported setting | layers measured | numbers printed with a flagged term | "
             "exact terms flagged | wall (s) | device |", "|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        for one in rec["runs"]:
            device = (one.get("devices") or ["?"])[0]
            lines.append(f"| {rec['name']} | {one['data']} | {one['n_samples']:,} | {one['reported']} | "
                         f"{one['measured']}/{one['n_layers']} | {one['printed_with_flagged_term']} | "
                         f"{one['exact_terms_flagged']} | {rec['wall_s']:.0f} | {device} |")
    lines.append("")
    for rec in records:
        for one in rec["runs"]:
            per_layer = ", ".join(f"{x['layer']}: {x['text']}" for x in one["layers"])
            lines.append(f"- {rec['name']}, {one['data']}: IE per layer at {one['reported']}: {per_layer}. "
                         f"{one['totals']}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--layers", default=None)
    p.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    p.add_argument("--results", required=True, help="JSON list to append this run's record to")
    args = p.parse_args(argv)
    record = run(args)
    path = pathlib.Path(args.results)
    records = [r for r in (json.loads(path.read_text()) if path.exists() else []) if r["name"] != args.name]
    records.append(record)
    path.write_text(json.dumps(records, indent=1) + "\n")
    path.with_suffix(".md").write_text(table(records))
    print(table([record]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
