"""What the selection default costs: one d = 768 problem at N = 20,000 through `mi.estimate`, end to end.

Issue 16's cost target: the default within 3x of the previous default on an H200. The previous default is the
same fast protocol without the selection (select=False) and with its old held-out layout (test_fraction 0.2,
held-out batches of the training batch size, 512). Both run in this process, alternately: the first call of
each compiles (reported apart), then `--repeats` warm calls; the JSON keeps every time and the medians.

  python benchmarks/default_cost.py                 # writes benchmarks/results/default_cost_<platform>.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np

import ie_jax.mi as mi
from ie_jax.mi import groundtruth as gt

RESULTS = Path(__file__).parent / "results"
PREVIOUS_DEFAULT = dict(select=False, test_fraction=0.2, eval_batch_size=None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--mi", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tag", default=None)
    args = parser.parse_args(argv)
    x, y = gt.correlated_gaussian(args.d, args.mi).sample(0, args.n)
    x, y = jax.device_put(x), jax.device_put(y)
    variants = {"selection default": {}, "previous default": PREVIOUS_DEFAULT}
    seconds = {name: [] for name in variants}
    values = {}
    for repeat in range(1 + args.repeats):
        for name, overrides in variants.items():
            start = time.perf_counter()
            r = mi.estimate(x, y, **overrides)
            seconds[name].append(time.perf_counter() - start)
            values[name] = {"value_nats": r.value, "ci95_nats": list(r.ci95), "flags": r.diagnostics.get("flags"),
                            "selected": r.diagnostics.get("selected")}
            print(f"{name:18s} call {repeat}: {seconds[name][-1]:7.2f} s  value {r.value:.3f}", flush=True)
    warm = {name: statistics.median(s[1:]) for name, s in seconds.items()}
    out = {"meta": {"device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
                    "jax": jax.__version__, "host": platform.node(), "d": args.d, "n": args.n,
                    "true_mi_nats": args.mi, "repeats": args.repeats},
           "seconds": seconds, "first_call_seconds": {k: s[0] for k, s in seconds.items()},
           "warm_median_seconds": warm, "ratio_warm": warm["selection default"] / warm["previous default"],
           "ratio_first_call": seconds["selection default"][0] / seconds["previous default"][0], "values": values}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"default_cost_{args.tag or out['meta']['platform']}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("warm_median_seconds", "ratio_warm", "ratio_first_call")}, indent=1))



def tables(results: Path = RESULTS) -> dict[Path, str]:
    """results/default_cost_<tag>.md from each committed default_cost_<tag>.json."""
    out = {}
    for path in sorted(results.glob("default_cost_*.json")):
        r = json.loads(path.read_text())
        m = r["meta"]
        lines = [f"**What the selection default costs** (`{path.name}`)", "",
                 f"Written by `benchmarks/default_cost.py` from that file. One d = {m['d']} problem, N = {m['n']:,}, "
                 f"true MI {m['true_mi_nats']:g} nats, through `mi.estimate` on {m['device']} (jax {m['jax']}); both "
                 f"defaults in one process, alternately: the first call of each (compilation included), then "
                 f"{m['repeats']} warm calls.", "",
                 "| default | first call s | warm median s | value nats [95% CI] | reported | flags |",
                 "|---|---|---|---|---|---|"]
        for name, label in (("selection default", "selection default"),
                            ("previous default", "previous default (`select=False`, its old held-out layout)")):
            v = r["values"][name]
            lines.append(f"| {label} | {r['first_call_seconds'][name]:.1f} | {r['warm_median_seconds'][name]:.2f} | "
                         f"{v['value_nats']:.2f} [{v['ci95_nats'][0]:.2f}, {v['ci95_nats'][1]:.2f}] | "
                         f"{v['selected'] or '-'} | {', '.join(v['flags'] or []) or '-'} |")
        lines += ["", f"Selection default over previous default: {r['ratio_warm']:.2f}x warm, "
                      f"{r['ratio_first_call']:.2f}x on the first call."]
        out[path.with_suffix(".md")] = "\n".join(lines) + "\n"
    return out

if __name__ == "__main__":
    main()
