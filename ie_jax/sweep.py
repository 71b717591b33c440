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

import dataclasses
import hashlib
import math
import pathlib
import platform
import sys
import time
import warnings

import numpy as np

from ie_jax import data as data_lib
from ie_jax import distributed
from ie_jax import plan
from ie_jax import validation
from ie_jax import variables as variables_lib
from ie_jax.mi.result import MIEstimate, check_units
from ie_jax.results import IEResult
from ie_jax.store import RunStore

PROTOCOLS = ("fast", "paper")
ESTIMATORS = (None, "neural", "exact_discrete", "noise", "gaussian")
DEFAULT_SIGMAS = (0.1, 0.3, 1.0)
DEFAULT_SAMPLES = 2048
CHUNK_BYTES = 1 << 29  # x and y of one chunk of problems stay under 512 MiB
NOISE_WORK_BYTES = 1 << 28  # one [sigmas, draws, components] logit block per problem, summed over a chunk


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


class Estimator:
    """A batched MI estimator over S settings: __call__(x[P,N,d], y[P,N,d]) -> [S][P] MIEstimate (nats)."""

    def __init__(self, protocol: str, estimator: str | None, sigma, seeds, discrete: bool, overrides: dict):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}: use one of {PROTOCOLS}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}: use one of {ESTIMATORS[1:]} (None = neural)")
        self.protocol, self.name = protocol, estimator or "neural"
        self.seeds = tuple(int(s) for s in seeds)
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed")
        self.overrides = dict(overrides)
        if self.name == "noise":
            self.sigmas = tuple(float(s) for s in (DEFAULT_SIGMAS if sigma is None else np.atleast_1d(sigma)))
            if not self.sigmas or min(self.sigmas) <= 0:
                raise ValueError(f"noise sigmas must be > 0, got {self.sigmas}")
        elif sigma is not None:
            raise ValueError(f"sigma applies to estimator='noise' only (estimator is {self.name!r})")
        else:
            self.sigmas = ()
        if self.name == "exact_discrete" and not discrete:
            raise ValueError("exact_discrete counts distinct states of discrete data; Gaussian-input states are "
                             "continuous: use estimator='noise' or a neural protocol")
        self.discrete = discrete

    @property
    def settings(self) -> tuple[str, ...]:
        if self.name == "neural":
            return (f"neural {self.protocol}",)
        if self.name == "noise":
            return tuple(f"noise sigma={s:g}" for s in self.sigmas)
        return (self.name,)

    @property
    def setting_params(self) -> list[dict]:
        if self.name == "noise":
            return [{"estimator": "noise", "sigma": s, "normaliser": "centred_std", "seed": self.seeds[0],
                     **self.overrides} for s in self.sigmas]
        if self.name == "neural":
            return [{"estimator": "neural", "protocol": self.protocol, "seeds": list(self.seeds), **self.overrides}]
        return [{"estimator": self.name, **self.overrides}]

    def problems_per_chunk(self, n_samples: int, hidden_size: int) -> int:
        """Default chunk size: x and y within CHUNK_BYTES, and the noise estimator's logits within
        NOISE_WORK_BYTES (they scale with sigmas x Monte Carlo draws x mixture components per problem)."""
        size = CHUNK_BYTES // max(1, 2 * n_samples * hidden_size * 4)
        if self.name == "noise":
            draws = self.overrides.get("n_mc", 512)
            components = min(n_samples, self.overrides.get("chunk", 2048))
            size = min(size, NOISE_WORK_BYTES // (len(self.sigmas) * draws * components * 4))
        return max(1, size)

    def min_samples(self, hidden_size: int) -> int:
        if self.name == "neural":
            from ie_jax.mi.protocols import resolve

            cfg, options = resolve(self.protocol, self.overrides)
            return _min_neural_samples(cfg.batch_size or 2, options["test_fraction"], options["readout"])
        if self.name == "gaussian":
            if self.overrides.get("ridge", 1.0) == 0:  # no ridge: the joint covariance needs N > dx + dy
                return 2 * hidden_size + 1
            return hidden_size + 2  # sample covariances of d-dim states need more than d samples
        return 2

    def __call__(self, x: np.ndarray, y: np.ndarray) -> list[list[MIEstimate]]:
        if self.name == "neural":
            from ie_jax.mi import estimate_batch

            return [list(estimate_batch(x, y, protocol=self.protocol, seeds=self.seeds, **self.overrides))]
        if self.name == "noise":
            from ie_jax.mi.noise import noise_mi_curve_batch

            return [list(row) for row in noise_mi_curve_batch(x, y, self.sigmas, seed=self.seeds[0], **self.overrides)]
        if self.name == "exact_discrete":
            from ie_jax.mi.discrete import exact_discrete_mi

            return [[exact_discrete_mi(a, b, discrete=True, **self.overrides) for a, b in zip(x, y)]]
        from ie_jax.mi.gaussian import gaussian_mi

        return [[_closed_form(gaussian_mi(a, b, **self.overrides), len(a)) for a, b in zip(x, y)]]


def _min_neural_samples(batch_size: int, test_fraction: float, readout: str) -> int:
    """Smallest N whose training split fills one batch and, for a held-out readout, leaves 2 test pairs."""
    n = batch_size
    while True:
        n_test = int(round(n * test_fraction))
        if n - n_test >= batch_size and (readout != "heldout" or n_test >= 2):
            return n
        n += 1


def _closed_form(value: float, n: int) -> MIEstimate:
    # The Gaussian closed form has no sampling error estimate of its own.
    return MIEstimate(float(value), math.nan, (math.nan, math.nan), "nats", "gaussian", {"n_samples": n})


def measure(model, data, *, protocol: str = "fast", estimator: str | None = None, micro: str = "isolated",
            n_samples: int | None = None, seq_len: int | None = None, seeds=(0,), layers=None, out=None,
            sigma=None, units: str = "nats", token_curve: bool = True, data_seed: int = 0,
            chunk_size: int | None = None, save_states: bool = False, capture_batch: int = 64,
            progress: bool = False, on_chunk=None, **overrides) -> IEResult:
    """Per-layer Information Emergence of `model` on `data`.

    model: a LoadedModel, a model name ("default") or a path (HF dir / .gguf).
    data: a spec ("icl:country", "text:kjv", "text:PATH", "gaussian[:VAR]") or a TokenData/GaussianData.
    protocol: neural protocol "fast" | "paper"; estimator: None (neural), "exact_discrete", "noise" (with
      `sigma`, a float or list: one setting each), "gaussian" (closed form). overrides go to the estimator.
    micro: "isolated" (each token alone, the paper's definition) | "in_context" (position t of the full pass).
    n_samples, seq_len, data_seed: used when `data` is a spec. seeds: neural critics per problem (CIs include
      their spread); the noise estimator uses the first as its Monte Carlo seed.
    layers: block indices (default all). token_curve: estimate every position for E(t) (else macro only).
    capture_batch: sequences per compiled capture call.
    out: a run directory: finished chunks are saved as they complete and a rerun resumes; result.json and
      result.csv are written at the end. on_chunk(index, n_chunks): called after each chunk is saved.
    Returns an IEResult in `units` ("nats" | "bits").
    """
    check_units(units)
    if micro not in variables_lib.MICRO_MODES:
        raise ValueError(f"micro must be one of {variables_lib.MICRO_MODES}, got {micro!r}")
    validation.check_measure_arguments(
        data=data, protocol=protocol, estimator=estimator, micro=micro, n_samples=n_samples, seq_len=seq_len,
        seeds=seeds, layers=layers, sigma=sigma, units=units, chunk_size=chunk_size, data_seed=data_seed,
        capture_batch=capture_batch, overrides=overrides, out=out if distributed.is_leader() else None)
    t_start = time.perf_counter()
    lm = _resolve_model(model)
    validation.check_model(lm, layers)
    dataset = _resolve_data(data, lm, n_samples, seq_len, data_seed)
    variables_lib.check_context(lm, dataset.seq_len)
    est = Estimator(protocol, estimator, sigma, seeds, isinstance(dataset, data_lib.TokenData), overrides)
    need = est.min_samples(lm.config.hidden_size)
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

    t0 = time.perf_counter()
    variables = variables_lib.extract(lm, dataset, layers=layers, micro=micro, token_curve=token_curve,
                                      batch_size=capture_batch, progress=progress)
    capture_s = time.perf_counter() - t0
    if store is not None and save_states:
        for name in ("context_input", "context_output", "micro_input", "micro_output", "micro_index"):
            if getattr(variables, name) is not None:
                store.save_states(name, getattr(variables, name))

    problems = problems_for(variables)
    slow = plan.slow_warning(estimator, protocol, overrides, n_problems=len(problems), n_seeds=len(seeds),
                             n_samples=dataset.n_samples, hidden_size=lm.config.hidden_size)
    if slow is not None:
        _warn(slow, progress)
    t0 = time.perf_counter()
    estimates = _estimate_all(variables, problems, est, store, chunk_size, progress, on_chunk,
                              getattr(dataset, "generating_entropy_nats", None))
    estimate_s = time.perf_counter() - t0

    metadata = _metadata(lm, dataset, est, micro, variables, units)
    metadata["timing_s"] = {"capture": capture_s, "estimate": estimate_s, "total": time.perf_counter() - t_start}
    result = _assemble(variables, problems, estimates, est, units, metadata)
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
    return data_lib.load_data(data, lm.tokenizer, n_samples=n_samples, seq_len=seq_len, seed=seed)


def _chunks(n_problems: int, n_samples: int, hidden: int, chunk_size: int | None, est: Estimator) -> int:
    if chunk_size is None:
        chunk_size = est.problems_per_chunk(n_samples, hidden)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return max(1, min(chunk_size, n_problems))


def _estimate_all(variables, problems, est, store, chunk_size, progress, on_chunk, generating_entropy):
    """[S][P] annotated estimates in nats, chunk by chunk; finished chunks come from / go to `store`."""
    from tqdm.auto import tqdm

    x0, _ = problem_pair(variables, problems[0])
    size = _chunks(len(problems), x0.shape[0], x0.shape[1], chunk_size, est)
    if store is not None:  # a started run keeps its chunk size: the chunk size is not part of its identity
        size = store.held_chunk_size() or size
    # Process 0 decides the chunks and which are finished: every process then runs the same chunks.
    size = distributed.broadcast_json(size)
    n_chunks = math.ceil(len(problems) / size)
    done = set(distributed.broadcast_json(sorted(store.finished_chunks()) if store is not None else []))
    results: list[list[MIEstimate | None]] = [[None] * len(problems) for _ in est.settings]
    bar = tqdm(total=len(problems), desc=f"estimation ({est.settings[0]})", unit="MI", disable=not progress)
    for c in range(n_chunks):
        chunk = problems[c * size : (c + 1) * size]
        if c in done and store is None:  # another process holds this finished chunk; its numbers come below
            rows = [[None] * len(chunk) for _ in est.settings]
        elif c in done:
            payload = store.load_chunk(c, MIEstimate.from_dict)
            if payload["problems"] != [p.key() for p in chunk]:
                raise ValueError(f"{store.chunk_path(c)} holds other problems than this run asks: delete "
                                 f"{store.dir} to start over")
            rows = payload["estimates"]
        else:
            pairs = [problem_pair(variables, p) for p in chunk]
            pad = size - len(chunk)  # repeat the last problem: one compiled shape for every chunk
            xs = np.stack([a for a, _ in pairs] + [pairs[-1][0]] * pad)
            ys = np.stack([b for _, b in pairs] + [pairs[-1][1]] * pad)
            rows = [[_annotate(e, a, b, generating_entropy) for e, (a, b) in zip(row[: len(chunk)], pairs)]
                    for row in est(xs, ys)]
            if store is not None:
                store.save_chunk(c, {"problems": [p.key() for p in chunk], "chunk_size": size,
                                     "estimates": [[e.to_dict() for e in row] for row in rows]})
        for s, row in enumerate(rows):
            results[s][c * size : c * size + len(chunk)] = row
        bar.update(len(chunk))
        if progress:
            bar.set_postfix(mean_mi_nats=f"{np.mean([e.value for e in rows[0]]):.3f}")
        if on_chunk is not None:
            on_chunk(c, n_chunks)
    bar.close()
    if done and distributed.process_count() > 1:  # process 0 alone read the finished chunks: send its numbers
        payload = distributed.broadcast_json([[e and e.to_dict() for e in row] for row in results])
        results = [[MIEstimate.from_dict(e) for e in row] for row in payload]
    return results


def _annotate(estimate: MIEstimate, x, y, generating_entropy) -> MIEstimate:
    from ie_jax.mi.ceilings import annotate

    return annotate(estimate, x, y, generating_entropy_nats=generating_entropy)


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
    return IEResult(layers=variables.layers, seq_len=T, micro_mode=variables.micro_mode, settings=est.settings,
                    context_positions=variables.positions, context=tuple(context),
                    micro=tuple(micro) if micro else None, units=units, metadata=metadata)


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
        "estimator": est.name, "protocol": est.protocol if est.name == "neural" else None,
        "setting_params": est.setting_params, "micro": micro, "units": units,
        "n_samples": dataset.n_samples, "seq_len": dataset.seq_len,
        "states_gib": variables.nbytes / 2**30,
        "versions": {"ie_jax": __version__, "jax": jax.__version__, "flax": flax.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "devices": [str(d) for d in jax.devices()],
        "variables": "macro = block input/output of the last token with its whole context; micro = "
                     + ("each token processed alone (position id 0)" if micro == "isolated"
                        else "position t of the full-context pass"),
    }
