"""measure(): the IE pipeline as one sequence of steps.

1. resolve the model and the data (ie_jax.ie.data specs such as "icl:country");
2. capture the macro/micro variables (ie_jax.ie.variables), kept in memory unless save_states=True;
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
import gc
import hashlib
import math
import os
import pathlib
import platform
import sys
import time
import warnings

import numpy as np

from ie_jax.ie import data as data_lib
from ie_jax import distributed
from ie_jax import plan as plan_lib
from ie_jax import validation
from ie_jax.ie import variables as variables_lib
from ie_jax.mi import chunks
from ie_jax.mi.estimators import ESTIMATOR_NAMES, Estimator, estimator_name, get_estimator
from ie_jax.mi.result import MIEstimate, check_units
from ie_jax.ie.result import IEResult
from ie_jax.ie.store import RunStore

PROTOCOLS = ("fast", "paper")
DEFAULT_SAMPLES = 2048
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


def _count_problems(lm, dataset, layers, micro: str, token_curve: bool) -> int:
    """len(problems_for(variables)) before the capture: per layer, the context positions and the isolated tokens."""
    n_layers = lm.config.num_layers if layers is None else len(layers)
    positions = dataset.seq_len if token_curve or micro == "in_context" else 1
    return n_layers * (positions + (dataset.seq_len if micro == "isolated" else 0))


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
    chunk_size: MI problems per compiled call (default: as many as `memory_budget` holds; a larger one that does
      not fit is lowered before the run starts); memory_budget: bytes (or "40GiB") of device memory per device
      for the states kept there and the chunks' programs (default `ie_jax.mi.chunks.default_memory_budget`: 80%
      of what JAX may still allocate on a GPU, 4 GiB on CPU). A problem that alone exceeds it is refused before
      the capture; an out-of-memory error mid-run halves the chunk and goes on. Neither changes a number, nor
      what a run directory resumes.
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
    budget = None if memory_budget is None else chunks.memory_budget(memory_budget)
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
    states_bytes = variables_lib.states_nbytes(lm, dataset, layers=layers, micro=micro, token_curve=token_curve)
    n_problems = _count_problems(lm, dataset, layers, micro, token_curve)
    # the memory plan, before the run directory is claimed: a run that cannot fit is refused here
    plan = plan_chunks(est, n_problems, dataset.n_samples, hidden, hidden, states_bytes, budget, chunk_size)
    store = finished = None
    progress = progress and distributed.is_leader()
    if plan.warning and distributed.is_leader():
        _warn(plan.warning, progress)
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
    with _compile_clock() as capture_compile_s:
        variables = variables_lib.extract(lm, dataset, layers=layers, micro=micro, token_curve=token_curve,
                                          batch_size=capture_batch, progress=progress, on_device=plan.states_on_device)
    timings["capture"] = time.perf_counter() - t0 - capture_compile_s()
    timings["compile"] = capture_compile_s()
    if store is not None and save_states:
        t0 = time.perf_counter()
        for name in ("context_input", "context_output", "micro_input", "micro_output", "micro_index"):
            if getattr(variables, name) is not None:
                store.save_states(name, getattr(variables, name))
        timings["write"] += time.perf_counter() - t0

    problems = problems_for(variables)
    slow = plan_lib.slow_warning(est.name, protocol or "fast", overrides, n_problems=len(problems),
                                 n_seeds=len(seeds), n_samples=dataset.n_samples, hidden_size=hidden)
    if slow is not None:
        _warn(slow, progress)
    size = plan.chunk_size
    if store is not None:  # a started run keeps its chunk size (its compiled programs too) where it still fits
        held = store.held_chunk_size()
        if held is not None and not plan.fits(held):
            _warn(f"the run in {store.dir} was started with chunks of {held} problems, more than the memory budget "
                  f"holds now: going on with chunks of {size}", progress)
        elif held is not None:
            size = held
    size = distributed.broadcast_json(min(size, len(problems)))  # process 0's: every process the same chunks
    sizes = []  # the chunk size, then each size it was halved to
    estimates = _estimate_all(variables, problems, est, store, size, report, on_chunk,
                              getattr(dataset, "generating_entropy_nats", None), timings,
                              warn=lambda message: _warn(message, progress), sizes=sizes)

    metadata = _metadata(lm, dataset, est, micro, variables, units)
    metadata["chunks"] = {
        "problems": len(problems), "chunk_size": sizes[0], "n_chunks": math.ceil(len(problems) / sizes[0]),
        "bytes_per_problem": plan.bytes_per_problem, "memory_budget_bytes": plan.budget,
        # the first device: planned (in use before, states kept there, a chunk) and measured (GPU/TPU)
        "planned_peak_bytes": plan.peak_bytes(sizes[-1]), "device_peak_bytes": chunks.device_memory_peak()}
    if len(sizes) > 1:  # halved after out-of-memory errors
        metadata["chunks"]["halved_to"] = sizes[1:]
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


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """A sweep's memory plan (`plan_chunks`): where its states stay and how many problems a chunk takes."""

    chunk_size: int
    states_on_device: bool
    bytes_per_problem: int  # `chunk_bytes_per_problem`
    budget: int  # per device, the states kept there included
    reserved: int  # bytes of the budget the states kept on the device take
    n_devices: int
    strict: bool  # the budget is a limit (given, or a device's): a chunk over it is not run
    in_use: int = 0  # bytes already in use on the first device when planned (the model's weights), outside the budget
    warning: str | None = None

    def fits(self, size: int) -> bool:
        return not self.strict or chunks.fits(size, self.bytes_per_problem, budget=self.budget,
                                                n_devices=self.n_devices, reserved=self.reserved)

    def peak_bytes(self, size: int) -> int:
        """Planned peak of the first device with chunks of `size`: what was in use, the states kept there and
        the chunk (compare with the device's `peak_bytes_in_use`)."""
        return self.in_use + chunks.peak_bytes(size, self.bytes_per_problem, self.n_devices, self.reserved)


def plan_chunks(est: Estimator, n_problems: int, n_samples: int, dx: int, dy: int, states_bytes: int,
                memory_budget=None, chunk_size: int | None = None) -> ChunkPlan:
    """Where the states stay and the chunk size, before anything runs (`ie_jax.mi.chunks.plan`).

    The budget (`memory_budget`, else `ie_jax.mi.chunks.default_memory_budget`) holds the states kept on the
    device and a chunk: states stay on the device (GPU/TPU, one process) when they take at most half of it,
    else on the host. Raises `ie_jax.mi.chunks.MemoryPlanError` where one problem alone does not fit; a
    `chunk_size` that does not fit is lowered (with a warning)."""
    budget = chunks.memory_budget(memory_budget)
    strict = memory_budget is not None or chunks.device_memory_limit() is not None
    per_problem = chunk_bytes_per_problem(est, n_samples, dx, dy)
    n_devices = est.n_devices(n_problems)
    on_device = states_on_device(states_bytes, budget)
    reserved = states_bytes if on_device else 0
    if on_device and not chunks.fits(1, per_problem, budget=budget, n_devices=n_devices, reserved=reserved):
        on_device, reserved = False, 0  # the states go to the host to leave a problem room
    fix = f"fewer samples (--samples {n_samples} now)"
    size = chunks.plan(n_problems, per_problem, budget=budget if strict else None, n_devices=n_devices,
                       reserved=reserved, what=f"one MI problem ({est.settings[0]}, N = {n_samples}, d = {dx})",
                       fix=fix)
    plan = ChunkPlan(size, on_device, per_problem, budget, reserved, n_devices, strict,
                     chunks.device_memory_in_use())
    if chunk_size is None:
        return plan
    if plan.fits(chunk_size):
        return dataclasses.replace(plan, chunk_size=int(chunk_size))
    return dataclasses.replace(plan, warning=(
        f"chunk_size={chunk_size} needs {chunks.gib(chunks.peak_bytes(chunk_size, per_problem, n_devices, reserved))} "
        f"of device memory, more than the {chunks.gib(budget)} memory budget: chunks of {size} instead (a larger "
        "--memory-budget, if the device has it, lets more problems share a chunk)"))


def chunk_bytes_per_problem(est: Estimator, n_samples: int, dx: int, dy: int) -> int:
    """Device memory one problem of a sweep's chunk needs: the estimator's (`Estimator.bytes_per_problem`, its
    inputs included), or the sweep's own steps where larger: a chunk formed from states on the device (the
    problems' rows and their stacked copy) and the distinct-state counts of x and y (`ie_jax.mi.ceilings`)."""
    from ie_jax.mi.discrete import screen_bytes

    raw = 4 * n_samples * (dx + dy)
    return max(int(est.bytes_per_problem(n_samples, dx, dy)), 2 * raw,
               raw + max(screen_bytes(n_samples, dx), screen_bytes(n_samples, dy)))


def states_on_device(states_bytes: int, memory_budget_bytes: int | None = None) -> bool:
    """Whether a sweep keeps its captured states on the device: where JAX reports the device's memory, in one
    process, when they take at most half the memory budget (`ie_jax.mi.chunks.memory_budget`), which also holds
    the chunks. Not on the CPU, whose states are host memory either way, nor across processes (each holds its
    chunks' problems only)."""
    if chunks.device_memory_limit() is None or distributed.process_count() > 1:
        return False
    return 2 * states_bytes <= chunks.memory_budget(memory_budget_bytes)


def _estimate_all(variables, problems, est, store, size, report, on_chunk, generating_entropy, timings,
                  warn=None, sizes=None):
    """[S][P] annotated estimates in nats, chunk by chunk; finished problems come from / go to `store`.

    Chunks are consecutive runs of `size` problems of the whole list; a chunk whose problems are all in
    `store` (from any earlier run, whatever its chunk size) is read back, the others are estimated (their
    finished problems skipped, the rest padded to `size`) and saved as a new chunk file. A chunk that runs out
    of device memory (`ie_jax.mi.chunks.is_out_of_memory`; one process) is tried again at half the size, and
    the rest of the run keeps that size: every finished chunk stays, and a resumed run takes the last size.
    `sizes` (a list) receives the chunk size and every size it was halved to."""
    n_chunks = math.ceil(len(problems) / size)
    finished = _finished_estimates(store, len(est.settings)) if store is not None else {}
    # Process 0 alone reads the store: every process then skips the same finished problems (same chunks).
    done = {tuple(k) for k in distributed.broadcast_json(sorted(p.key() for p in finished))}
    results: list[list[MIEstimate | None]] = [[None] * len(problems) for _ in est.settings]
    report(f"{len(problems)} MI problems in {n_chunks} chunk{'s' * (n_chunks > 1)} of {size} "
           f"({', '.join(est.settings)}); {sum(p in finished for p in problems)} already done")
    clock = dict(start=time.perf_counter(), estimated_s=0.0, compile_s=0.0, n_estimated=0)
    sizes = [] if sizes is None else sizes
    sizes.append(size)
    start, c = 0, 0
    while start < len(problems):
        chunk = problems[start : start + size]
        todo = [p for p in chunk if tuple(p.key()) not in done]
        if todo:
            try:
                rows = _estimate_chunk(variables, todo, est, size, generating_entropy, timings, clock)
            except Exception as error:  # noqa: BLE001 - only an out-of-memory error is handled here
                if not (chunks.is_out_of_memory(error) and size > 1 and distributed.process_count() == 1):
                    raise
                first = str(error).strip().splitlines()[0][:300]
                rows = None  # leave the except block: the error's traceback holds the chunk's device arrays
            if rows is None:
                gc.collect()
                size = math.ceil(size / 2)
                sizes.append(size)
                message = (f"chunk {c + 1} ran out of device memory ({first}): going on with chunks of {size} "
                           "problems (finished chunks are kept; a smaller --memory-budget plans smaller chunks "
                           "from the start)")
                (warn or warnings.warn)(message)
                continue
            t0 = time.perf_counter()
            if store is not None:
                store.save_chunk(max(store.finished_chunks(), default=-1) + 1, {
                    "problems": [p.key() for p in todo], "chunk_size": size,
                    "estimates": [[e.to_dict() for e in r] for r in rows]})
            timings["write"] += time.perf_counter() - t0
            clock["estimated_s"] += time.perf_counter() - t0
            for k, p in enumerate(todo):
                finished[p] = [row[k] for row in rows]
        for k, p in enumerate(chunk):
            for s, estimate in enumerate(finished.get(p, [None] * len(est.settings))):
                results[s][start + k] = estimate
        start += len(chunk)
        n_chunks = c + 1 + math.ceil((len(problems) - start) / size)
        chunks_left = sum(any(tuple(p.key()) not in done and p not in finished for p in problems[d : d + size])
                          for d in range(start, len(problems), size))
        # the ETA leaves out compilation: it happens once, in the first chunk estimated
        per_chunk_s = max(0.0, clock["estimated_s"] - clock["compile_s"]) / max(1, clock["n_estimated"])
        report(_progress_line(c, n_chunks, start, len(problems), time.perf_counter() - clock["start"],
                              per_chunk_s if clock["n_estimated"] else None, chunks_left))
        if on_chunk is not None:
            on_chunk(c, n_chunks)
        c += 1
    if done and distributed.process_count() > 1:  # process 0 alone read the finished problems: send its numbers
        payload = distributed.broadcast_json([[e and e.to_dict() for e in row] for row in results])
        results = [[MIEstimate.from_dict(e) for e in row] for row in payload]
    return results


def _estimate_chunk(variables, todo, est, size, generating_entropy, timings, clock) -> list[list[MIEstimate]]:
    """[S][len(todo)] annotated estimates of one chunk: its problems padded to `size` (repeating the last one:
    one compiled shape for every chunk), estimated under the sweep's plan (`ie_jax.mi.chunks.planned`)."""
    from ie_jax.mi.ceilings import annotate_counts, state_counts

    t0 = time.perf_counter()
    pairs = [problem_pair(variables, p) for p in todo]
    pad = size - len(todo)
    xs, ys = (_stack([pair[k] for pair in pairs] + [pairs[-1][k]] * pad) for k in (0, 1))
    del pairs  # states on the device: the problems' rows are copies, freed once stacked
    # distinct-state counts once per variable (each problem's x and y), not once per setting
    counts = list(zip(state_counts(xs), state_counts(ys)))[: len(todo)]
    t1 = time.perf_counter()
    with _compile_clock() as compile_s, chunks.planned(size):
        rows = est.estimate_settings(xs, ys)
    t2 = time.perf_counter()
    rows = [[annotate_counts(e, cx, cy, generating_entropy_nats=generating_entropy)
             for e, (cx, cy) in zip(list(row)[: len(todo)], counts)] for row in rows]
    t3 = time.perf_counter()
    timings["prepare"] += t1 - t0
    timings["compile"] += compile_s()
    timings["train"] += t2 - t1 - compile_s()
    timings["readout"] += t3 - t2
    clock["compile_s"] += compile_s()
    clock["estimated_s"] += t3 - t0
    clock["n_estimated"] += 1
    return rows


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
