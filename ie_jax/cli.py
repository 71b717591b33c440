"""The `ie-jax` command: measure, report, models.

  ie-jax measure --model default --data icl:country --samples 2000 --protocol fast --out runs/x
  ie-jax measure --model default --data text:kjv --estimator noise --sigma 0.1,0.3,1 --out runs/y
  ie-jax report runs            # PNGs next to every run under runs/, and runs/report.html
  ie-jax models                 # architectures, named models, named random shapes
  ie-jax measure ... --coordinator HOST:PORT --num-processes 2 --process-id I   # one process per host
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def _ints(text: str) -> list[int]:
    """'0,1,2' or ranges '0-5,10' -> list of ints."""
    out = []
    try:
        for part in text.split(","):
            a, sep, b = part.strip().partition("-")
            out += list(range(int(a), int(b) + 1)) if sep else [int(a)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected integers or ranges like 0-5,10, got {text!r}") from e
    return out


def _setting(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE a Python literal (200, 1e-3, "dv", (64, 64)) or a bare word."""
    import ast

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def load_model_spec(spec: str):
    """'default' | 'minilm' | PATH (HF dir, .gguf) | ORG/NAME (HF hub id) | 'random:SHAPE' (named shape or an HF
    config.json path)."""
    from ie_jax.models import load_model, random_model

    if spec.startswith("random:"):
        shape = spec.partition(":")[2]
        path = pathlib.Path(shape)
        if path.suffix == ".json":
            if not path.is_file():
                raise FileNotFoundError(f"no config file {path}")
            from ie_jax.fileio import read_json

            return random_model(read_json(path, fix="give a Hugging Face config.json"))
        return random_model(shape)
    return load_model(spec)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ie-jax", description="Information Emergence in language models (JAX).")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")

    m = sub.add_parser("measure", parents=[common],
                       help="measure per-layer IE of a model on data; results into --out")
    m.add_argument("--model", default="default",
                   help="default | minilm | PATH (HF dir or .gguf) | ORG/NAME (Hugging Face id: from the local HF "
                        "cache, or downloaded) | random:SHAPE")
    m.add_argument("--data", action="append", default=None,
                   help="icl:CATEGORY (country, animal, colour, ...) | text:kjv | text:PATH | gaussian[:VARIANCE] | tokens:random; "
                        "repeat for several data sets (each into OUT/<name>, one model load); default icl:country")
    m.add_argument("--samples", type=int, default=None,
                   help="number of sequences N (default 8192 with an accelerator, 1000 on a CPU)")
    m.add_argument("--seq-len", type=int, default=None, help="tokens per sequence T (default per data kind)")
    m.add_argument("--protocol", default=None, choices=["fast", "paper"], help="neural MI protocol (default fast)")
    m.add_argument("--estimator", default=None, choices=["neural", "exact_discrete", "noise", "gaussian"],
                   help="default: noise, the noise-regularised IE(sigma) over a wide sigma grid (reported at the "
                        "smallest sigma where the most layers are measured); neural with --protocol")
    m.add_argument("--sigma", type=_floats, default=None,
                   help="noise levels for --estimator noise, e.g. 0.3,1,3 (default 0.3,1,3,10,30,100)")
    m.add_argument("--set", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="estimator setting, e.g. --set steps=300 --set batch_size=256 (repeatable)")
    m.add_argument("--micro", default="isolated", choices=["isolated", "in_context"])
    m.add_argument("--seeds", type=_ints, default=[0], help="critic seeds, e.g. 0,1,2")
    m.add_argument("--layers", type=_ints, default=None, help="blocks to measure, e.g. 0-5,10 (default all)")
    m.add_argument("--units", default="nats", choices=["nats", "bits"])
    m.add_argument("--no-token-curve", action="store_true", help="estimate the last position only (no E(t))")
    m.add_argument("--data-seed", type=int, default=0)
    m.add_argument("--chunk-size", type=int, default=None, help="MI problems per compiled call (default: by memory)")
    m.add_argument("--memory-budget", default=None, metavar="BYTES",
                   help="device memory (per device) for the states kept there and a chunk of MI problems, e.g. "
                        "40GiB (default: 80%% of what JAX may still allocate on the GPU; 4GiB on CPU)")
    m.add_argument("--save-states", action="store_true", help="also save the hidden states under OUT/states")
    m.add_argument("--out", required=True, help="run directory (a rerun with the same arguments resumes)")
    hosts = m.add_argument_group("across hosts", "one process per host (or GPU) on JAX's multi-controller runtime; "
                                 "none given: auto-detected on TPU pods, SLURM and Open MPI, else one process")
    hosts.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="address of process 0")
    hosts.add_argument("--num-processes", type=int, default=None, help="number of processes")
    hosts.add_argument("--process-id", type=int, default=None, help="this process's id, 0..N-1")
    hosts.add_argument("--heartbeat-timeout", type=int, default=60, metavar="SECONDS",
                       help="a process silent this long counts as failed and stops the others")

    r = sub.add_parser("report", parents=[common], help="PNG figures and one self-contained HTML page for the runs under DIR")
    r.add_argument("dir")

    sub.add_parser("models", parents=[common], help="list architectures, named models and named random shapes")
    return p


def _run_dir(out: str, spec: str, several: bool) -> pathlib.Path:
    """OUT itself for one data set; OUT/<spec as a file name> for several."""
    if not several:
        return pathlib.Path(out)
    name = re.sub(r"[^A-Za-z0-9._]+", "-", spec.replace(":", "-")).strip("-")
    return pathlib.Path(out) / name


def _measure(args) -> int:
    from ie_jax import distributed

    # Before any JAX work: joins the other processes, if any (explicit flags or auto-detection).
    distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                           heartbeat_timeout_s=args.heartbeat_timeout)
    try:
        return _measure_all(args)
    except Exception as e:  # across hosts, a failed collective usually means another process died: say so
        explained = distributed.explain_failure(e)
        if explained is e:
            raise
        raise explained from e


def _measure_all(args) -> int:
    from ie_jax import distributed
    from ie_jax.ie.measure import enable_compilation_cache, measure
    from ie_jax.validation import check_measure_arguments

    enable_compilation_cache()  # before the model loads: its programs are cached too
    # Every process measures; process 0 alone writes the run directories and prints.
    say = print if distributed.is_leader() else (lambda *a, **k: None)
    specs = args.data or ["icl:country"]
    estimator, samples = _estimator_and_samples(args)
    for spec in specs:  # every argument checked before the model is loaded or a file written
        check_measure_arguments(
            data=spec, protocol=args.protocol, estimator=estimator, micro=args.micro, n_samples=samples,
            seq_len=args.seq_len, seeds=args.seeds, layers=args.layers, sigma=args.sigma, units=args.units,
            chunk_size=args.chunk_size, data_seed=args.data_seed, overrides=dict(args.set),
            out=_run_dir(args.out, spec, len(specs) > 1) if distributed.is_leader() else None)
    lm = load_model_spec(args.model)
    for spec in specs:
        out = _run_dir(args.out, spec, len(specs) > 1)
        say(f"== {lm.name} on {spec} -> {out}")
        result = measure(
            lm, spec, protocol=args.protocol, estimator=estimator,
            micro=args.micro, n_samples=samples, seq_len=args.seq_len, seeds=tuple(args.seeds),
            layers=args.layers, out=out, sigma=args.sigma, units=args.units,
            token_curve=not args.no_token_curve, data_seed=args.data_seed, chunk_size=args.chunk_size,
            memory_budget=args.memory_budget, save_states=args.save_states, progress=True, **dict(args.set),
        )
        timing = result.metadata["timing_s"]
        print("seconds: " + ", ".join(f"{k} {timing[k]:.1f}" for k in
                                      ("capture", "prepare", "compile", "train", "readout", "write", "total")))
        for line in _result_lines(result):
            say(line)
        say(f"results: {out / 'result.json'} and result.csv")
    say(f"figures and HTML: ie-jax report {args.out}")
    return 0


def _result_lines(result) -> list[str]:
    """What the CLI prints of a result: the reported setting's IE at every layer (a number only where measured,
    else '>= x', '<= x' or 'n/a'), its totals over measured layers, why that setting, and per other setting how
    many layers are measured (result.json, result.csv and the report hold them all)."""
    n = result.metadata.get("n_samples")
    lines = [f"{result.setting}" + (f", N={n}" if n else "") + f": {result.totals_text()}; per layer: "
             + " ".join(result.ie_text())]
    unmeasured = [(layer, r) for layer, r in zip(result.layers, result.ie_reason) if r]
    if unmeasured:
        layer, reason = unmeasured[0]
        lines.append(f"  not measured at {len(unmeasured)} layer(s), e.g. layer {layer}: {reason}")
    if len(result.settings) > 1:
        why = result.metadata.get("selected_setting", {}).get("reason", "")
        counts = [f"{label.split('=')[-1]}:{int(result.select(i).ie_measured.sum())}"
                  for i, label in enumerate(result.settings)]
        lines.append(f"  reported: {why}. Layers measured per setting: " + " ".join(counts))
    return lines


def _estimator_and_samples(args) -> tuple[str, int]:
    """The user's choices, else the defaults for this machine (ie_jax.plan), said aloud on a CPU."""
    from ie_jax import plan

    defaults = plan.measure_defaults()
    if args.protocol is not None:  # a neural protocol was asked for
        defaults["estimator"] = "neural"
    elif args.sigma is not None:  # noise levels were given
        defaults["estimator"] = "noise"
    estimator = args.estimator or defaults["estimator"]
    samples = defaults["samples"] if args.samples is None else args.samples
    if args.samples is None and not plan.accelerator():
        print(f"No accelerator (JAX backend: cpu), so --samples {samples} by default (minutes here with the "
              f"{estimator} estimator" + ("; the neural protocols take hours on a CPU)" if estimator == "neural" else ")"))
    return estimator, samples


def _report(args) -> int:
    from ie_jax.paper.report import write_report

    from ie_jax.ie.store import unfinished_runs

    page = write_report(args.dir)
    print(f"report: {page.resolve()}")
    for run in unfinished_runs(args.dir):
        print(f"unfinished run (no result.json; rerun its ie-jax measure command to resume): {run}")
    return 0


def _models(_args) -> int:
    from ie_jax.models import list_architectures
    from ie_jax.models.loading import NAMED_MODELS
    from ie_jax.models.registry import MODEL_TYPES, NAMED_SHAPES

    print("architectures: " + ", ".join(list_architectures()))
    print("HF model_type values loaded: " + ", ".join(sorted(MODEL_TYPES)))
    print("named models (--model NAME): " + ", ".join(NAMED_MODELS)
          + "; or a Hugging Face id (--model org/name: the local HF cache, downloaded if allowed)")
    print("named random shapes (--model random:SHAPE): " + ", ".join(sorted(NAMED_SHAPES)))
    return 0


# -- errors: how an exception becomes the CLI's one-line error (what went wrong, what to do about it) ----------

# Exceptions a user's input or environment can cause: reported as errors (exit status 2), not as crashes.
USER_ERRORS = (ValueError, OSError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError)


def one_line(exc: BaseException) -> str:
    """A single line naming the problem and, where it is known, the fix."""
    if isinstance(exc, PermissionError):
        text = f"permission denied on {exc.filename}: choose a path you can read and write, or fix its permissions"
    elif isinstance(exc, NotADirectoryError):
        text = f"{exc.filename}: a file stands where a directory is needed: choose another --out or move the file"
    elif isinstance(exc, IsADirectoryError):
        text = f"{exc.filename} is a directory where a file is needed: give a file path"
    elif isinstance(exc, FileExistsError):
        text = f"{exc.filename} already exists: choose another path or delete it"
    elif isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    elif isinstance(exc, UnicodeDecodeError):
        text = f"not UTF-8 text ({exc.reason} at byte {exc.start}): give a UTF-8 .txt or .jsonl file"
    elif isinstance(exc, json.JSONDecodeError):
        text = f"not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
    elif isinstance(exc, KeyError):
        text = f"missing key {exc.args[0]!r}" if exc.args else "missing key"
    elif isinstance(exc, USER_ERRORS):
        text = str(exc) or type(exc).__name__
    else:
        text = f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the traceback and report it)"
    return " ".join(text.split())  # one line, whatever the message held


def exit_status(exc: BaseException) -> int:
    """2 for a user's mistake (argparse's convention), 1 for an internal error."""
    return 2 if isinstance(exc, USER_ERRORS) else 1


def main(argv=None) -> int:

    args = _parser().parse_args(argv)
    try:
        return {"measure": _measure, "report": _report, "models": _models}[args.command](args)
    except Exception as e:  # a user's mistake is one line (the traceback with --debug)
        if args.debug:
            raise
        print(f"ie-jax {args.command}: error: {one_line(e)}", file=sys.stderr)
        return exit_status(e)


if __name__ == "__main__":
    sys.exit(main())
