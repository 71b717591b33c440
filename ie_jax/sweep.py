"""measure(): the IE pipeline as one sequence of steps.

1. resolve the model and the data (ie_jax.data specs such as "icl:country");
2. capture the macro/micro variables (ie_jax.variables), kept in memory unless save_states=True;
3. list the MI problems: per layer, block input vs output at every context position (the last is the macro
   variable; the others give the token curve E(t)) and of every token alone (isolated micro);
4. estimate them in fixed-size chunks, each chunk one call of a batched estimator (one compiled program serves
   every chunk: the last one is padded), every finished chunk written atomically to `out` so a killed run
   resumes where it stopped;
5. add ceilings and flags to every estimate (ie_jax.mi.ceilings.annotate) and assemble the IEResult.

Across hosts (ie_jax.distributed) every process runs these same steps on the global mesh; process 0 alone
reads and writes `out` and tells the others which chunks are finished, so all form the same chunks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import pathlib
import platform
import re
import sys
import time
import warnings

import numpy as np

from ie_jax import data as data_lib
from ie_jax import distributed
from ie_jax import plan
from ie_jax import validation
from ie_jax import variables as variables_lib
from ie_jax.mi.estimators import ESTIMATOR_NAMES, Estimator, estimator_name, get_estimator
from ie_jax.mi.result import MIEstimate, check_units
from ie_jax.results import IEResult
from ie_jax.store import RunStore

PROTOCOLS = ("fast", "paper")
DEFAULT_SAMPLES = 2048
CPU_MEMORY_BUDGET = 1 << 30  # working memory of one chunk where the device does not report its memory
CACHE_ENV = "IE_JAX_COMPILATION_CACHE"  # directory of the persistent compilation cache; "off" disables it


@dataclasses.dataclass(frozen=True)
class Problem:
    """One MI problem: block `layer`'s input vs output, at context position t or for token t alone."""

    kind: str  # "context" | "micro"
    layer_index: int
    t: int

    def key(self) -> list:
        return [self.kind, self.layer_index, self.t]


def problems_for(variables: variables_lib.Variables) -> list[Problem]:
    """Every MI problem of a sweep, in a fixed order (the order chunks are numbered in)."""
    out = []
    for i in range(len(variables.layers)):
        out += [Problem("context", i, t) for t in variables.positions]
        if variables.micro_mode == "isolated":
            out += [Problem("micro", i, t) for t in range(variables.seq_len)]
    return out


def problem_pair(variables: variables_lib.Variables, p: Problem) -> tuple[np.ndarray, np.ndarray]:
    if p.kind == "context":
        return variables.context_pair(p.layer_index, variables.positions.index(p.t))
    return variables.micro_pair(p.layer_index, p.t)


def make_estimator(protocol: str | None, estimator: str | None, sigma, seeds, discrete: bool,
                   overrides: dict) -> Estimator:
    """The sweep's estimator from measure()'s arguments (seeds: neural critics; the noise estimator's first)."""
    name = estimator_name(estimator, protocol)
    protocol = protocol or "fast"
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {PROTOCOLS}")
    if name not in ESTIMATOR_NAMES:
        raise ValueError(f"unknown estimator {estimator!r}: use one of {ESTIMATOR_NAMES} (None = the default, noise)")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    if sigma is not None and name != "noise":
        raise ValueError(f"sigma applies to estimator='noise' only (estimator is {name!r})")
    if name == "neural":
        return get_estimator(name, protocol=protocol, seeds=seeds, **overrides)
    if name == "noise":
        return get_estimator(name, sigma=sigma, seed=seeds[0], **overrides)
    if name == "exact_discrete":
        return get_estimator(name, discrete=discrete, **overrides)
    return get_estimator(name, **overrides)


def measure(model, data, *, protocol: str | None = None, estimator: str | None = None, micro: str = "isolated",
            n_samples: int | None = None, seq_len: int | None = None, seeds=(0,), layers=None, out=None,
            sigma=None, units: str = "nats", token_curve: bool = True, data_seed: int = 0,
            chunk_size: int | None = None, memory_budget=None, save_states: bool = False, capture_batch: int = 64,
            progress: bool = False, on_chunk=None, **overrides) -> IEResult:
    """Per-layer Information Emergence of `model` on `data`.

    model: a LoadedModel, a model name ("default") or a path (HF dir / .gguf).
    data: a spec ("icl:country", "text:kjv", "text:PATH", "gaussian[:VAR]") or a TokenData/GaussianData.
    estimator: None (the default: "noise", the noise-regularised IE(sigma) over `ie_jax.mi.estimators.
      DEFAULT_SIGMAS`, or "neural" when a protocol is named), "noise" (with `sigma`, a float or list: one setting
      each), "neural" (critics; protocol "fast" | "paper", default fast), "exact_discrete" (counting),
      "gaussian" (closed form). overrides go to the estimator (`ie_jax.mi.get_estimator`).
      With several settings the result selects the smallest sigma at which the most layers have a measured IE
      (metadata["selected_setting"] says which and why); `IEResult.select` picks another.
    micro: "isolated" (each token alone, the paper's definition) | "in_context" (position t of the full pass).
    n_samples, seq_len, data_seed: used when `data` is a spec. seeds: neural critics per problem (CIs include
      their spread); the noise estimator uses the first as its Monte Carlo seed.
    layers: block indices (default all). token_curve: estimate every position for E(t) (else macro only).
    chunk_size: MI problems per compiled call (default: as many as `memory_budget` holds); memory_budget:
      bytes (or "8GiB") of device working memory per chunk (default: half the device's memory; 1 GiB on CPU).
      Neither changes a number, nor what a run directory resumes.
    capture_batch: sequences per compiled capture call. progress: print the number of problems and chunks,
      then one line per chunk (problems done, ETA).
    out: a run directory: finished chunks are saved as they complete and a rerun resumes; result.json and
      result.csv are written at the end. on_chunk(index, n_chunks): called after each chunk is saved.
    Compiled programs are kept in JAX's persistent cache (`enable_compilation_cache`), so a rerun does not
    recompile. metadata["timing_s"] holds the seconds of capture, prepare, compile, train, readout, write.
    Returns an IEResult in `units` ("nats" | "bits").
    """
    check_units(units)
    if micro not in variables_lib.MICRO_MODES:
        raise ValueError(f"micro must be one of {variables_lib.MICRO_MODES}, got {micro!r}")
    validation.check_measure_arguments(
        data=data, protocol=protocol, estimator=estimator, micro=micro, n_samples=n_samples, seq_len=seq_len,
        seeds=seeds, layers=layers, sigma=sigma, units=units, chunk_size=chunk_size, data_seed=data_seed,
        capture_batch=capture_batch, overrides=overrides, out=out if distributed.is_leader() else None)
    budget = None if memory_budget is None else parse_bytes(memory_budget)
    enable_compilation_cache()
    t_start = time.perf_counter()
    lm = _resolve_model(model)
    validation.check_model(lm, layers)
    dataset = _resolve_data(data, lm, n_samples, seq_len, data_seed)
    variables_lib.check_context(lm, dataset.seq_len)
    est = make_estimator(protocol, estimator, sigma, seeds, isinstance(dataset, data_lib.TokenData), overrides)
    hidden = lm.config.hidden_size
    need = est.min_samples(hidden, hidden)
    if dataset.n_samples < need:
        raise ValueError(f"{dataset.n_samples} samples are too few for {est.settings[0]}: it needs at least "
                         f"{need}; raise --samples")
    validation.check_capture(lm, dataset, layers, micro, token_curve)
    store = finished = None
    progress = progress and distributed.is_leader()
    if out is not None and distributed.is_leader():
        store = RunStore(out, _identity(lm, dataset, est, micro, layers, token_curve, units))
        finished = store.finished_result()  # a finished run reruns from its result, without a capture
        if finished is not None and (not save_states or (store.dir / "states").is_dir()):
            store.close()
        else:
            finished = None
    if distributed.process_count() > 1:  # the other processes return with process 0, with its result
        shared = distributed.broadcast_json(None if finished is None else finished.to_dict())
        finished = finished or (None if shared is None else IEResult.from_dict(shared))
    if finished is not None:
        return finished
    report = (lambda line: print(line, flush=True)) if progress and distributed.is_leader() else (lambda line: None)

    timings = dict.fromkeys(("capture", "prepare", "compile", "train", "readout", "write"), 0.0)
    t0 = time.perf_counter()
    on_device = states_on_device(
        variables_lib.states_nbytes(lm, dataset, layers=layers, micro=micro, token_curve=token_curve), budget)
    with _compile_clock() as capture_compile_s:
        variables = variables_lib.extract(lm, dataset, layers=layers, micro=micro, token_curve=token_curve,
                                          batch_size=capture_batch, progress=progress, on_device=on_device)
    timings["capture"] = time.perf_counter() - t0 - capture_compile_s()
    timings["compile"] = capture_compile_s()
    if store is not None and save_states:
        t0 = time.perf_counter()
        for name in ("context_input", "context_output", "micro_input", "micro_output", "micro_index"):
            if getattr(variables, name) is not None:
                store.save_states(name, getattr(variables, name))
        timings["write"] += time.perf_counter() - t0

    problems = problems_for(variables)
    slow = plan.slow_warning(est.name, protocol or "fast", overrides, n_problems=len(problems), n_seeds=len(seeds),
                             n_samples=dataset.n_samples, hidden_size=hidden)
    if slow is not None:
        _warn(slow, progress)
    size = chunk_size or chunk_size_for(est, len(problems), dataset.n_samples, hidden, hidden, budget)
    if store is not None:  # a started run keeps its chunk size (its compiled programs too); no identity
        size = store.held_chunk_size() or size
    size = distributed.broadcast_json(min(size, len(problems)))  # process 0's: every process the same chunks
    estimates = _estimate_all(variables, problems, est, store, size, report, on_chunk,
                              getattr(dataset, "generating_entropy_nats", None), timings)

    metadata = _metadata(lm, dataset, est, micro, variables, units)
    metadata["chunks"] = {"problems": len(problems), "chunk_size": size, "n_chunks": math.ceil(len(problems) / size)}
    metadata["timing_s"] = timings
    result = _assemble(variables, problems, estimates, est, units, metadata)
    timings["total"] = time.perf_counter() - t_start  # up to result.json, which records it
    if store is not None:  # process 0 only
        result.to_json(store.dir / "result.json")
        result.to_csv(store.dir / "result.csv")
        store.close()
    return result


def _warn(message: str, progress: bool) -> None:
    # With a progress display (the CLI) a plain line on stderr; from Python, a warning the caller can filter.
    if progress:
        print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
        warnings.warn(message, stacklevel=3)


def _resolve_model(model):
    if isinstance(model, (str, pathlib.Path)):
        from ie_jax.models import load_model

        return load_model(model)
    if not all(hasattr(model, a) for a in ("module", "config", "arch")):
        raise TypeError(f"model must be a LoadedModel, a model name or a path, got {type(model).__name__}")
    return model


def _resolve_data(data, lm, n_samples, seq_len, seed):
    if isinstance(data, (data_lib.TokenData, data_lib.GaussianData)):
        return data
    if not isinstance(data, str):
        raise TypeError(f"data must be a spec string or TokenData/GaussianData, got {type(data).__name__}")
    n_samples = DEFAULT_SAMPLES if n_samples is None else n_samples  # 0 is refused, never replaced
    return data_lib.load_data(data, lm.tokenizer, n_samples=n_samples, seq_len=seq_len, seed=seed,
                              vocab_size=lm.config.vocab_size)


def chunk_size_for(est: Estimator, n_problems: int, n_samples: int, dx: int, dy: int,
                   memory_budget_bytes: int | None = None) -> int:
    """Problems per chunk: as many as the memory budget holds (`est.bytes_per_problem`), balanced so the
    chunks are about equal (the last is padded to the same shape: one compiled program serves them all).

    The budget: `memory_budget_bytes`, else half the device memory JAX reports (GPU/TPU), else 1 GiB (CPU).
    """
    budget = memory_budget_bytes if memory_budget_bytes is not None else default_memory_budget()
    if budget <= 0:
        raise ValueError(f"the memory budget must be > 0 bytes, got {budget}")
    most = max(1, budget // max(1, est.bytes_per_problem(n_samples, dx, dy)))
    n_chunks = math.ceil(n_problems / most)
    return math.ceil(n_problems / n_chunks)


def default_memory_budget() -> int:
    """Half of the first device's memory where JAX reports it (GPU/TPU), else 1 GiB (CPU)."""
    limit = device_memory_limit()
    return limit // 2 if limit else CPU_MEMORY_BUDGET


def device_memory_limit() -> int | None:
    """Bytes JAX may allocate on the first device (GPU/TPU), None where the backend does not say (CPU)."""
    import jax

    try:
        limit = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
    except Exception:  # backends without memory statistics (CPU)
        limit = None
    return int(limit) if limit else None


def states_on_device(states_bytes: int, memory_budget_bytes: int | None = None) -> bool:
    """Whether a sweep keeps its captured states on the device: when they fit beside the chunks' working
    memory (the memory budget, default half the device), in one process. Not on the CPU, whose states are host
    memory either way, nor across processes (each holds its chunks' problems only)."""
    limit = device_memory_limit()
    if limit is None or distributed.process_count() > 1:
        return False
    budget = memory_budget_bytes if memory_budget_bytes is not None else default_memory_budget()
    return states_bytes <= limit - budget


def parse_bytes(text) -> int:
    """'8GiB', '512M', '2e9' or an int -> bytes (K/M/G/T are powers of 1024, with or without 'iB'/'B')."""
    if isinstance(text, (int, np.integer)):
        return int(text)
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)(i?B)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot read {text!r} as a memory size: use e.g. 8GiB, 512M or a number of bytes")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))


def _estimate_all(variables, problems, est, store, size, report, on_chunk, generating_entropy, timings):
    """[S][P] annotated estimates in nats, chunk by chunk; finished problems come from / go to `store`.

    Chunks are consecutive runs of `size` problems of the whole list; a chunk whose problems are all in
    `store` (from any earlier run, whatever its chunk size) is read back, the others are estimated (their
    finished problems skipped, the rest padded to `size`) and saved as a new chunk file."""
    from ie_jax.mi.ceilings import annotate_counts, state_counts

    n_chunks = math.ceil(len(problems) / size)
    finished = _finished_estimates(store, len(est.settings)) if store is not None else {}
    # Process 0 alone reads the store: every process then skips the same finished problems (same chunks).
    done = {tuple(k) for k in distributed.broadcast_json(sorted(p.key() for p in finished))}
    results: list[list[MIEstimate | None]] = [[None] * len(problems) for _ in est.settings]
    report(f"{len(problems)} MI problems in {n_chunks} chunk{'s' * (n_chunks > 1)} of {size} "
           f"({', '.join(est.settings)}); {sum(p in finished for p in problems)} already done")
    start, estimated_s, estimate_compile_s, n_estimated = time.perf_counter(), 0.0, 0.0, 0
    for c in range(n_chunks):
        chunk = problems[c * size : (c + 1) * size]
        todo = [p for p in chunk if tuple(p.key()) not in done]
        if todo:
            t0 = time.perf_counter()
            pairs = [problem_pair(variables, p) for p in todo]
            pad = size - len(todo)  # repeat the last problem: one compiled shape for every chunk
            xs, ys = (_stack([pair[k] for pair in pairs] + [pairs[-1][k]] * pad) for k in (0, 1))
            # distinct-state counts once per variable (each problem's x and y), not once per setting
            counts = list(zip(state_counts(xs), state_counts(ys)))[: len(todo)]
            t1 = time.perf_counter()
            with _compile_clock() as compile_s:
                rows = est.estimate_settings(xs, ys)
            t2 = time.perf_counter()
            rows = [[annotate_counts(e, cx, cy, generating_entropy_nats=generating_entropy)
                     for e, (cx, cy) in zip(list(row)[: len(todo)], counts)] for row in rows]
            t3 = time.perf_counter()
            if store is not None:
                store.save_chunk(max(store.finished_chunks(), default=-1) + 1, {
                    "problems": [p.key() for p in todo], "chunk_size": size,
                    "estimates": [[e.to_dict() for e in r] for r in rows]})
            for k, p in enumerate(todo):
                finished[p] = [row[k] for row in rows]
            timings["prepare"] += t1 - t0
            timings["compile"] += compile_s()
            estimate_compile_s += compile_s()
            timings["train"] += t2 - t1 - compile_s()
            timings["readout"] += t3 - t2
            timings["write"] += time.perf_counter() - t3
            estimated_s += time.perf_counter() - t0
            n_estimated += 1
        for k, p in enumerate(chunk):
            for s, estimate in enumerate(finished.get(p, [None] * len(est.settings))):
                results[s][c * size + k] = estimate
        chunks_left = sum(any(tuple(p.key()) not in done and p not in finished
                              for p in problems[d * size : (d + 1) * size]) for d in range(c + 1, n_chunks))
        # the ETA leaves out compilation: it happens once, in the first chunk estimated
        per_chunk_s = max(0.0, estimated_s - estimate_compile_s) / max(1, n_estimated)
        report(_progress_line(c, n_chunks, min((c + 1) * size, len(problems)), len(problems),
                              time.perf_counter() - start, per_chunk_s if n_estimated else None, chunks_left))
        if on_chunk is not None:
            on_chunk(c, n_chunks)
    if done and distributed.process_count() > 1:  # process 0 alone read the finished problems: send its numbers
        payload = distributed.broadcast_json([[e and e.to_dict() for e in row] for row in results])
        results = [[MIEstimate.from_dict(e) for e in row] for row in payload]
    return results


def _stack(arrays):
    """np.stack, or jnp.stack for device states: a chunk is formed where the states are, with no host copy."""
    import jax

    if isinstance(arrays[0], jax.Array):
        import jax.numpy as jnp

        return jnp.stack(arrays)
    return np.stack(arrays)


def _progress_line(c, n_chunks, done, total, elapsed_s, per_chunk_s, chunks_left) -> str:
    line = f"chunk {c + 1}/{n_chunks}: {done}/{total} problems, {elapsed_s:.1f} s"
    if per_chunk_s is not None:  # an ETA once a chunk has been estimated (read-back chunks cost nothing)
        line += f", ETA {chunks_left * per_chunk_s:.0f} s"
    return line


def _finished_estimates(store, n_settings: int) -> dict[Problem, list[MIEstimate]]:
    """Every problem finished by an earlier run into `store` -> its [S] estimates (any chunk size)."""
    out = {}
    for c in sorted(store.finished_chunks()):
        payload = store.load_chunk(c, MIEstimate.from_dict)
        if len(payload["estimates"]) != n_settings:
            raise ValueError(f"{store.chunk_path(c)} holds {len(payload['estimates'])} settings, this run "
                             f"{n_settings}: delete {store.dir} to start over")
        for k, key in enumerate(payload["problems"]):
            out[Problem(*key)] = [row[k] for row in payload["estimates"]]
    return out


class _CompileSeconds:
    """Seconds JAX spent tracing, lowering and compiling (or loading from the persistent cache) in this
    process, from jax.monitoring events; `compiles` counts backend compilations that were not cache hits."""

    seconds, compiles, cache_hits = 0.0, 0, 0
    _EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
               "/jax/core/compile/backend_compile_duration")
    _listening = False

    @classmethod
    def listen(cls) -> None:
        if cls._listening:
            return
        import jax.monitoring

        def on_duration(event, duration, **_):
            if event in cls._EVENTS:
                cls.seconds += duration
                cls.compiles += event == cls._EVENTS[-1]

        def on_event(event, **_):
            cls.cache_hits += event == "/jax/compilation_cache/cache_hits"

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        jax.monitoring.register_event_listener(on_event)
        cls._listening = True


@contextlib.contextmanager
def _compile_clock():
    """with _compile_clock() as seconds: ...; seconds() -> compile seconds spent inside the block."""
    _CompileSeconds.listen()
    start, end = _CompileSeconds.seconds, None

    def seconds():
        return (_CompileSeconds.seconds if end is None else end) - start

    yield seconds
    end = _CompileSeconds.seconds


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache, so a rerun or a resumed sweep does not recompile.

    Directory: $IE_JAX_COMPILATION_CACHE if set ("0", "off" or "" disable the cache), else
    $XDG_CACHE_HOME/ie_jax/jax (default ~/.cache/ie_jax/jax). A cache the user configured for JAX
    (jax_compilation_cache_dir) is left as it is. Returns the directory in use, or None.
    """
    import jax

    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    where = os.environ.get(CACHE_ENV)
    if where is not None and where.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    if where is None:
        where = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ie_jax", "jax")
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", where)
    # every program of a sweep, however quick to compile: a resumed run then compiles nothing
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()  # JAX decides at its first compilation whether to use a cache: decide again
    return where


def _assemble(variables, problems, estimates, est, units, metadata) -> IEResult:
    L, T, P = len(variables.layers), variables.seq_len, len(variables.positions)
    index = {(p.kind, p.layer_index, p.t): k for k, p in enumerate(problems)}
    context, micro = [], []
    for row in estimates:
        row = [e.to(units) for e in row]
        context.append(tuple(tuple(row[index["context", i, t]] for t in variables.positions) for i in range(L)))
        if variables.micro_mode == "isolated":
            micro.append(tuple(tuple(row[index["micro", i, t]] for t in range(T)) for i in range(L)))
    assert all(len(r) == P for s in context for r in s)
    result = IEResult(layers=variables.layers, seq_len=T, micro_mode=variables.micro_mode, settings=est.settings,
                      context_positions=variables.positions, context=tuple(context),
                      micro=tuple(micro) if micro else None, units=units, metadata=metadata)
    index, why = reported_setting(result)
    metadata["selected_setting"] = {"index": index, "setting": est.settings[index], "reason": why}
    return result.select(index)


def reported_setting(result: IEResult) -> tuple[int, str]:
    """(index, why) of the setting a sweep reports first: the one at which the most layers have a measured IE,
    of those the smallest noise level (the finest resolution at which the states can be measured)."""
    counts = [int(result.select(i).ie_measured.sum()) for i in range(len(result.settings))]
    sigmas = [p.get("sigma", 0.0) for p in result.metadata.get("setting_params", [{}] * len(counts))]
    index = min(range(len(counts)), key=lambda i: (-counts[i], sigmas[i] if sigmas[i] is not None else 0.0, i))
    if len(counts) == 1:
        return index, "the only setting"
    return index, (f"{result.settings[index]}: IE measured at {counts[index]} of {len(result.layers)} layers, the most "
                   "of any setting" + (" (the smallest sigma among those)" if counts.count(counts[index]) > 1 else ""))


def _identity(lm, dataset, est, micro, layers, token_curve, units) -> dict:
    """What makes two runs the same: a rerun with an equal identity resumes, a different one is refused."""
    from ie_jax import __version__

    if isinstance(dataset, data_lib.TokenData):
        data_id = {"spec": dataset.spec, "sha256": hashlib.sha256(dataset.token_ids.tobytes()).hexdigest(),
                   "shape": list(dataset.token_ids.shape)}
    else:
        data_id = dataset.metadata()
    return {
        "ie_jax": __version__, "model": {"name": lm.name, "arch": lm.arch, "config": repr(lm.config)},
        "data": data_id, "estimator": est.setting_params, "micro": micro, "token_curve": bool(token_curve),
        "layers": None if layers is None else [int(l) for l in layers], "units": units,
    }


def _metadata(lm, dataset, est, micro, variables, units) -> dict:
    import flax
    import jax

    from ie_jax import __version__

    return {
        "model": {"name": lm.name, "arch": lm.arch, "num_layers": lm.config.num_layers,
                  "hidden_size": lm.config.hidden_size, "dtype": str(getattr(lm.module, "dtype", ""))},
        "data": dataset.metadata(),
        "estimator": est.name, "protocol": getattr(est, "protocol", None),
        "setting_params": est.setting_params, "micro": micro, "units": units,
        "n_samples": dataset.n_samples, "seq_len": dataset.seq_len,
        "states_gib": variables.nbytes / 2**30, "states_on_device": variables.on_device,
        "versions": {"ie_jax": __version__, "jax": jax.__version__, "flax": flax.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "devices": [str(d) for d in jax.devices()],
        "variables": "macro = block input/output of the last token with its whole context; micro = "
                     + ("each token processed alone (position id 0)" if micro == "isolated"
                        else "position t of the full-context pass"),
    }
