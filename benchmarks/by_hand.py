"""Tables of the runs timed by hand (no script of this folder ran them; their JSON records what was run and seen).

- results/default_measure_cpu.json: `make run` on a fresh clone, and `ie-jax measure --model default
  --data icl:country` with its CPU defaults, on the shared 2-core CPU.
- results/multihost_example_cpu.json: the 2-process example of docs/distributed.md against 1 process with
  the same 4 devices, on the same CPU.

`make docs` writes results/<name>.md from each (`tables()`).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def default_measure_table(r: dict) -> str:
    run, fresh = r["timing_s_from_result_json"], r["make_run_fresh_clone"]
    lines = ["**`make run` and `ie-jax measure` timed on this CPU** (`default_measure_cpu.json`, by hand)", "",
             f"Written by `benchmarks/by_hand.py` from that file. {r['machine']}; {r['date_utc']} UTC; jax "
             f"{r['versions']['jax']}, Python {r['versions']['python']}. Wall time is set by the other jobs; CPU time "
             "(user + sys) is the work.", "",
             "| command | wall | CPU (user + sys) |", "|---|---|---|",
             f"| `make run` on a fresh clone (install, measure ICL countries and KJV text, report) | "
             f"{_minutes(fresh['wall_s'])} | {fresh['user_s'] + fresh['sys_s']:.0f} s |",
             f"| `ie-jax measure --model default --data icl:country` ({r['n_samples']:,} samples, {r['n_problems']} MI "
             f"problems; the run's own timing: capture {run['capture']:.0f} s, estimate {run['estimate']:.0f} s) | "
             f"{_minutes(r['wall_s'])} | {r['user_s'] + r['sys_s']:.0f} s |"]
    return "\n".join(lines) + "\n"


def multihost_table(r: dict) -> str:
    two, one = r["two_processes"], r["one_process"]
    cpu_two = sum(two["cpu_user_s_per_process"]) / len(two["cpu_user_s_per_process"])
    lines = ["**The 2-process example on this CPU** (`multihost_example_cpu.json`, by hand)", "",
             f"Written by `benchmarks/by_hand.py` from that file: {r['what']}. {r['machine']}; {r['date_utc']}, jax "
             f"{r['jax']}, {r['code']}.", "",
             "| run | devices in all | wall | CPU (user) per process |", "|---|---|---|---|",
             f"| 2 processes x 2 devices, collectives over gloo | {two['devices']} | {_minutes(two['wall_s'])} | "
             f"{cpu_two:.0f} s |",
             f"| 1 process x 4 devices | {one['devices']} | {_minutes(one['wall_s'])} | {one['cpu_user_s']:.0f} s |",
             "", f"Estimates compared: {r['n_estimates']}; largest difference between the two runs: "
                 f"{r['max_abs_difference_nats']:g} nats."]
    return "\n".join(lines) + "\n"


def tables(results: Path = RESULTS) -> dict[Path, str]:
    load = lambda name: json.loads((results / f"{name}.json").read_text())  # noqa: E731
    return {results / "default_measure_cpu.md": default_measure_table(load("default_measure_cpu")),
            results / "multihost_example_cpu.md": multihost_table(load("multihost_example_cpu"))}
