"""The IE sweep end to end, as a user runs it: `ie-jax measure` on random-weight GPT-2 shapes, N = 20,000.

Each run is a fresh process (`ie_jax.measure(..., progress=True)`, what `ie-jax measure` calls) with a cold
compilation cache, timed from the start of the process to its end; while it runs `nvidia-smi` samples the GPU's
utilisation (the device busy fraction). The per-phase seconds (capture, prepare, compile, train, readout,
write) come from the result's metadata; `progress` holds the per-chunk lines (problems done, seconds). A run
that passes its time limit is recorded with the problems it finished and the elapsed time.

Runs (--runs, comma-separated NAME:MODEL:DATA:ESTIMATOR; ESTIMATOR "default" = no estimator arguments):
  default-gaussian:gpt2:gaussian:default  the default (IE(sigma) over the sigma grid), Gaussian inputs
  default-tokens:gpt2:tokens:default      the same on random token ids
  default-gaussian:gpt2-medium:gaussian:default
  fast-gaussian:gpt2:gaussian:neural      fast protocol with its checks, Gaussian inputs (192 problems)
  fast-tokens:gpt2:tokens:neural          the same on random token ids (uniform over the vocabulary)
  noise-gaussian:gpt2:gaussian:noise      the noise estimator, sigmas 0.3 and 1, 512 draws
  fast-gaussian:gpt2-medium:gaussian:neural   (24 layers x 16 = 384 problems, d = 1024)
--baseline DIR: also time one chunk through the previous path, the package as it was at commit 97b21cf
  (`git archive 97b21cf ie_jax | tar -x -C DIR`), in its own process: the chunk `ie-jax measure` formed there
  (4 problems of GPT-2 small at N = 20,000), first call (with compilation) and second call.
Writes --out (a JSON list of runs: model, n_samples, total_s, phase seconds, device busy fraction, gpu, jax).
Try it on CPU with tiny sizes: --samples 700 --layers 0 --runs fast-gaussian:gpt2:gaussian:neural
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

DEFAULT_RUNS = ("default-gaussian:gpt2:gaussian:default,default-tokens:gpt2:tokens:default,"
                "default-gaussian:gpt2-medium:gaussian:default,fast-gaussian:gpt2:gaussian:neural,"
                "fast-tokens:gpt2:tokens:neural,fast-gaussian:gpt2-medium:gaussian:neural")
REPO = pathlib.Path(__file__).resolve().parents[1]


def _worker(spec: dict) -> None:
    """One sweep in this process (the path of `ie-jax measure`); prints the result's metadata as JSON."""
    import numpy as np

    from ie_jax.cli import load_model_spec
    from ie_jax.ie.measure import enable_compilation_cache, measure

    enable_compilation_cache()
    t0 = time.perf_counter()
    lm = load_model_spec(f"random:{spec['model']}")
    load_s = time.perf_counter() - t0
    dataset = "tokens:random" if spec["data"] == "tokens" else spec["data"]
    kwargs = dict(sigma=[0.3, 1.0], n_mc=512) if spec["estimator"] == "noise" else {}
    protocol = "fast" if spec["estimator"] == "neural" else None
    estimator = None if spec["estimator"] == "default" else spec["estimator"]
    result = measure(lm, dataset, n_samples=spec["samples"], estimator=estimator, protocol=protocol,
                     layers=spec.get("layers"), out=spec["out"], progress=True, **kwargs)
    meta = result.metadata
    print("RESULT " + json.dumps({"load_model_s": load_s, "timing_s": meta["timing_s"], "chunks": meta["chunks"],
                                  "devices": meta["devices"], "states_on_device": meta.get("states_on_device"),
                                  "states_gib": meta.get("states_gib"), "generator": meta["data"].get("generator"),
                                  "memory": meta.get("memory"), "setting": result.setting,
                                  "selected_setting": meta.get("selected_setting"),
                                  "ie_measured": int(result.ie_measured.sum()), "n_layers": len(result.layers),
                                  "ie_text": result.ie_text(3), "ie_bound": result.ie_bound,
                                  "measured_per_setting": [int(result.select(i).ie_measured.sum())
                                                           for i in range(len(result.settings))],
                                  "ie": [None if not np.isfinite(v) else float(v) for v in result.ie]}), flush=True)


def _baseline_worker(spec: dict) -> None:
    """One chunk through the package at 97b21cf (imported from PYTHONPATH): its Estimator and annotate."""
    import numpy as np

    from ie_jax.ie import measure as sweep
    from ie_jax.cli import load_model_spec
    from ie_jax.ie.data import load_data

    lm = load_model_spec("random:gpt2")
    dataset = load_data("gaussian", n_samples=spec["samples"])
    t0 = time.perf_counter()
    variables = sweep.variables_lib.extract(lm, dataset, layers=[0], batch_size=64)
    capture_1_layer_s = time.perf_counter() - t0
    est = sweep.Estimator("fast", None, None, (0,), False, {})
    problems = sweep.problems_for(variables)
    size = sweep._chunks(12 * len(problems), spec["samples"], lm.config.hidden_size, None, est)
    pairs = [sweep.problem_pair(variables, p) for p in problems[:size]]
    xs, ys = np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])
    calls = []
    for _ in range(2):
        t0 = time.perf_counter()
        rows = est(xs, ys)
        t1 = time.perf_counter()
        [[sweep._annotate(e, a, b, None) for e, (a, b) in zip(row, pairs)] for row in rows]
        calls.append({"estimate_s": t1 - t0, "annotate_s": time.perf_counter() - t1})
    print("RESULT " + json.dumps({"chunk_problems": size, "capture_1_layer_s": capture_1_layer_s, "calls": calls}),
          flush=True)


class _GpuSampler:
    """nvidia-smi utilisation samples (percent of time a kernel ran) every 200 ms while it runs."""

    def __init__(self):
        self.samples: list[float] = []
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, text=True)
        except OSError:
            self.proc = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.strip().split(",")[0]))
            except ValueError:
                pass

    def stop(self) -> float | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def _run_process(args: list[str], env: dict, timeout_s: float) -> tuple[dict, float]:
    """Run a worker; returns (its RESULT JSON plus its progress lines and log tail, busy fraction)."""
    sampler = _GpuSampler()
    t0 = time.perf_counter()
    lines: list[str] = []
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip())
            print("   |", line.rstrip(), flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        timed_out = True
    reader.join(timeout=5)
    total_s = time.perf_counter() - t0
    busy = sampler.stop()
    record = {"total_s": total_s, "timed_out": timed_out, "returncode": proc.returncode,
              "progress": [l for l in lines if l.startswith(("chunk ", "seconds", "==")) or "MI problems" in l]}
    results = [l for l in lines if l.startswith("RESULT ")]
    if results:
        record.update(json.loads(results[-1][len("RESULT "):]))
    elif not timed_out:
        record["log_tail"] = lines[-30:]
    return record, busy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--runs", default=DEFAULT_RUNS)
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--layers", default=None, help="e.g. 0,1 (default all): a smaller sweep")
    p.add_argument("--baseline", default=None, help="directory holding the package at 97b21cf (ie_jax/)")
    p.add_argument("--run-timeout-s", type=float, default=300.0)
    p.add_argument("--budget-s", type=float, default=1e9, help="skip runs that would start after this many seconds")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--baseline-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(json.loads(args.worker))
    if args.baseline_worker:
        return _baseline_worker(json.loads(args.baseline_worker))

    import jax

    gpu = _gpu_name()
    start = time.perf_counter()
    records = []
    out = pathlib.Path(args.out)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="sweep_e2e_"))
    layers = [int(l) for l in args.layers.split(",")] if args.layers else None
    common = {"gpu": gpu, "jax": jax.__version__, "host": os.uname().nodename}

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(records, indent=1))

    if args.baseline:
        env = {**os.environ, "PYTHONPATH": str(pathlib.Path(args.baseline).resolve()), "IE_JAX_COMPILATION_CACHE": "off"}
        print(f"== baseline: one chunk through the package at 97b21cf ({args.baseline})", flush=True)
        record, busy = _run_process([sys.executable, __file__, "--out", args.out, "--baseline-worker",
                                     json.dumps({"samples": args.samples})], env, args.run_timeout_s)
        records.append({"run": "baseline-97b21cf-one-chunk", "model": "gpt2", "n_samples": args.samples,
                        "data": "gaussian", "estimator": "neural fast", "device_busy_fraction": busy, **common,
                        **record})
        save()
    for run in args.runs.split(","):
        name, model, data, estimator = run.split(":")
        if time.perf_counter() - start > args.budget_s:
            records.append({"run": name, "model": model, "skipped": "time budget spent", **common})
            continue
        spec = {"model": model, "data": data, "estimator": estimator, "samples": args.samples, "layers": layers,
                "out": str(scratch / f"{name}_{model}")}
        env = {**os.environ, "PYTHONPATH": str(REPO), "IE_JAX_COMPILATION_CACHE": str(scratch / f"cache_{name}_{model}")}
        print(f"== {name} on {model}: {data} inputs, {estimator}, N = {args.samples}", flush=True)
        record, busy = _run_process([sys.executable, __file__, "--out", args.out, "--worker", json.dumps(spec)], env,
                                    args.run_timeout_s)
        records.append({"run": name, "model": model, "n_samples": args.samples, "data": data, "estimator": estimator,
                        "layers": layers, "device_busy_fraction": busy, **common, **record})
        save()
    save()
    print(json.dumps([{k: r.get(k) for k in ("run", "model", "total_s", "timed_out", "timing_s",
                                              "device_busy_fraction")} for r in records], indent=1))


def _gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "none (CPU)"



# Tables: results/sweep_e2e_h200.md from the committed JSON (`make docs` writes it)
RESULTS = REPO / "benchmarks" / "results"
COMMITS = {"now": "f56a1b7", "main": "6accc3c", "old": "62aeded", "merged": "6880669"}  # issue 14's device calls:
# device capture; main before it; the first call; issues 14, 16 and 19 merged on an integration branch (not on main)
TARGETS_S = {"sweep": 120.0, "capture": 5.0, "compile": 30.0}  # issue 14; host-side work <= 10% of the time


def _busy(fraction) -> str:
    return "" if fraction is None else f"{100 * fraction:.1f}%" if fraction < 0.01 else f"{100 * fraction:.0f}%"


def table(records: list[dict]) -> str:
    """Every sweep run in the order measured (stopped runs as lower bounds), the 97b21cf one-chunk baseline, and
    issue 14's targets on the device-capture code."""
    def run(name, commit):
        return next(r for r in records if r["run"] == name and r["commit"] == commit and r["model"] == "gpt2")

    lines = ["**`ie-jax measure` end to end on one H200** (`sweep_e2e_h200.json`)", "",
             "Written by `benchmarks/sweep_e2e.py` from that file. Total: seconds from the start of the process; "
             "phases from the result's `metadata[\"timing_s\"]`; before measure: JAX start and model init; states: "
             "where the captured states were kept; busy: mean `nvidia-smi` utilisation over the run.", "",
             "| run | code (device call) | total s | before measure | capture | prepare | compile | train | states "
             "| busy |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r["run"].startswith("baseline"):
            continue
        t = r.get("timing_s") or {}
        total = f"> {r['total_s']:.1f} (stopped)" if r["timed_out"] else f"{r['total_s']:.1f}"
        before = f"{r['total_s'] - t['total']:.1f}" if t else ""
        phases = " | ".join(f"{t[k]:.1f}" if k in t else "" for k in ("capture", "prepare", "compile", "train"))
        states = f"device, {r['states_gib']:.1f} GiB" if r.get("states_on_device") else "host"
        lines.append(f"| {r['run']} ({r['model']}, {r['data']}, {r['estimator']}) | {r['commit']} "
                     f"({r['device_call'][11:]}, `{r['log']}`) | {total} | {before} | {phases} | {states} | "
                     f"{_busy(r['device_busy_fraction'])} |")
    lines += ["", "One chunk of the sweep through the package at 97b21cf, before issue 14:", "",
              "| device call | problems | first call s | second call s | annotation s | 192 problems at the second "
              "call's rate |",
              "|---|---|---|---|---|---|"]
    for r in records:
        if r["run"].startswith("baseline"):
            first, second = r["calls"][0], r["calls"][1]
            lines.append(f"| {r['commit']} ({r['device_call'][11:]}) | {r['chunk_problems']} | "
                         f"{first['estimate_s']:.1f} | {second['estimate_s']:.1f} | {second['annotate_s']:.1f} | "
                         f"{192 / r['chunk_problems'] * second['estimate_s'] / 60:.0f} min |")
    now, before, old, merged = (run(n, COMMITS[k]) for n, k in (("fast-gaussian", "now"), ("fast-gaussian", "main"),
                                                               ("noise-gaussian", "old"), ("fast-gaussian", "merged")))
    noise = run("noise-gaussian", COMMITS["now"])
    t = lambda r, k: r["timing_s"][k]  # noqa: E731
    # the noise sweep's extra train time read as copying both chunks of device states (2 x 96 x 20,000 x 768 x 2
    # float32) to the host: an inference from the phase times, not a profile
    copy_gb_s = 2 * 2 * 96 * 20_000 * 768 * 4 / 1e9 / (t(noise, "train") - t(old, "train"))
    met = lambda ok: "met" if ok else "missed"  # noqa: E731
    lines += ["", f"Targets (issue 14), on the device-capture code ({COMMITS['now']}); main before it "
                  f"{COMMITS['main']}, the selection default merged {COMMITS['merged']}:", "",
              "| target | measured | met? |", "|---|---|---|",
              f"| fast sweep <= {TARGETS_S['sweep']:.0f} s | {now['total_s']:.1f} s (main {before['total_s']:.1f} s; "
              f"selection default {merged['total_s']:.1f} s) | {met(now['total_s'] <= TARGETS_S['sweep'])} |",
              f"| capture of all 12 layers <= {TARGETS_S['capture']:.0f} s | {t(now, 'capture'):.1f} s (main "
              f"{t(before, 'capture'):.1f} s) | {met(t(now, 'capture') <= TARGETS_S['capture'])} |",
              f"| compilation <= {TARGETS_S['compile']:.0f} s | {t(now, 'compile'):.1f} s, over by "
              f"{t(now, 'compile') - TARGETS_S['compile']:.1f} s (selection default {t(merged, 'compile'):.1f} s, over "
              f"by {t(merged, 'compile') - TARGETS_S['compile']:.1f} s; the noise sweep {t(noise, 'compile'):.1f} s) | "
              f"{met(t(now, 'compile') <= TARGETS_S['compile'])} |",
              f"| host-side work <= 10% | GPU busy {_busy(now['device_busy_fraction'])} (selection default "
              f"{_busy(merged['device_busy_fraction'])}) | {met(now['device_busy_fraction'] >= 0.9)} |",
              f"| noise sweep <= {TARGETS_S['sweep']:.0f} s | {noise['total_s']:.1f} s ({COMMITS['old']}: "
              f"{old['total_s']:.1f} s); train {t(noise, 'train'):.1f} s ({COMMITS['old']}: {t(old, 'train'):.1f} s), "
              f"as if its device states crossed to the host at {copy_gb_s:.2f} GB/s (inferred) | "
              f"{met(noise['total_s'] <= TARGETS_S['sweep'])} |",
              "", f"Gaussian states drawn on the device from {COMMITS['now']} on: {now['generator']}."]
    return "\n".join(lines) + "\n"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def table_h100(records: list[dict]) -> str:
    """Markdown of `sweep_e2e_h100.json`: each run at the default memory budget, its phases, chunks and memory,
    and what the reported setting measured."""
    gib = lambda b: f"{b / 2**30:.1f}" if b else "-"
    lines = ["**`ie-jax measure` end to end on one H100 80GB, default memory budget** (`sweep_e2e_h100.json`)", "",
             "Written by `benchmarks/sweep_e2e.py` from that file. Random-weight GPT-2 shapes, N = 20,000, T = 8, one "
             "fresh process per run with a cold compilation cache; `default` = no estimator arguments (the noise "
             "estimator over its sigma grid), `neural` = `--protocol fast`. Layers measured: layers whose IE is a "
             "number at the reported setting. A run killed at the benchmark's own time limit says so.", "",
             "| run | model | data | estimator | total s | compile s | train s | chunks | planned / device peak GiB | "
             "reported setting | layers measured | IE per layer |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r.get("skipped"):
            lines.append(f"| {r['run']} | {r['model']} | - | - | skipped: {r['skipped']} | | | | | | | |")
            continue
        t, c = r.get("timing_s") or {}, r.get("chunks") or {}
        total = f"{r['total_s']:.0f}" + (" (killed at the run limit)" if r.get("timed_out") else "")
        chunks = f"{c['n_chunks']} x {c['chunk_size']}" if c else "-"
        peaks = f"{gib(c.get('planned_peak_bytes'))} / {gib(c.get('device_peak_bytes'))}" if c else "-"
        ie = " ".join(r.get("ie_text") or []) or "-"
        measured = f"{r['ie_measured']}/{r['n_layers']}" if r.get("n_layers") else "-"
        lines.append(f"| {r['run']} | {r['model']} | {r['data']} | {r['estimator']} | {total} | "
                     f"{_seconds(t.get('compile'))} | {_seconds(t.get('train'))} | {chunks} | {peaks} | "
                     f"{r.get('setting') or '-'} | {measured} | {ie} |")
    gpus = sorted({r["gpu"] for r in records if r.get("gpu")})
    lines += ["", f"GPU: {', '.join(gpus)}; jax {records[0].get('jax')}."]
    return "\n".join(lines) + "\n"


def tables(results: pathlib.Path = RESULTS) -> dict[pathlib.Path, str]:
    return {results / "sweep_e2e_h200.md": table(json.loads((results / "sweep_e2e_h200.json").read_text())),
            results / "sweep_e2e_h100.md": table_h100(json.loads((results / "sweep_e2e_h100.json").read_text()))}


if __name__ == "__main__":
    main()
