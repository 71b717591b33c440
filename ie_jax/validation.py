"""Checks of everything a user asks for, run before any file is written or any model is run.

`check_measure_arguments` takes the arguments of `ie_jax.measure` (and the CLI's) and raises a ValueError
that names the bad argument and the fix. It needs neither the model nor the data, so the CLI calls it before
loading anything; `check_model` then checks what needs the model (finite weights, block indices) and
`check_output_dir` that the run directory can be created. Estimator settings (`--set KEY=VALUE`) are checked
against the keyword arguments of the estimator they go to: unknown keys, wrong types (`lr=fast`), non-finite
or out-of-range numbers.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import pathlib
import tempfile
import weakref

MICRO_MODES = ("isolated", "in_context")
# Modules whose weight arrays were found finite, with those arrays (jax arrays are immutable: new weights are
# new arrays, so they are checked again).
_FINITE_WEIGHTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
UNITS = ("nats", "bits")

# Settings that must be > 0, >= 0 or >= 2 whichever estimator they go to.
POSITIVE = {"lr", "smile_clip", "power", "loss_scale", "embed_dim", "steps", "rtol", "chunk",
            "max_problems_per_chunk", "memory_budget_bytes"}
NON_NEGATIVE = {"warmup_steps", "end_lr", "eval_every", "ridge", "margin_nats"}
AT_LEAST_TWO = {"n_mc", "batch_size"}
# Settings where None means "no limit" or "full batch".
NONE_ALLOWED = {"batch_size", "max_problems_per_chunk", "memory_budget_bytes"}
# Arguments the sweep passes itself: a setting of the same name would clash with them.
# Settings that take a word or True/False/None: ie_jax.mi.protocols.resolve checks them.
CHECKED_BY_RESOLVE = {"standardize", "critic_check"}
RESERVED = {"units", "mesh", "seed", "seeds", "discrete", "sigma", "sigmas", "protocol", "x", "y"}


def check_measure_arguments(*, data=None, protocol: str | None = None, estimator: str | None = None,
                            micro: str = "isolated", n_samples=None, seq_len=None, seeds=(0,), layers=None,
                            sigma=None, units: str = "nats", chunk_size=None, data_seed: int = 0,
                            capture_batch: int = 64, overrides: dict | None = None, out=None) -> None:
    """Raise ValueError naming the first bad argument of `ie_jax.measure` (CLI spelling in the fix)."""
    from ie_jax.mi.estimators import ESTIMATOR_NAMES, estimator_name
    from ie_jax.mi.protocols import PROTOCOLS

    name = estimator_name(estimator, protocol)
    protocol = protocol or "fast"
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {tuple(PROTOCOLS)}")
    if estimator is not None and estimator not in ESTIMATOR_NAMES:
        raise ValueError(f"unknown estimator {estimator!r}: use one of {ESTIMATOR_NAMES}")
    if micro not in MICRO_MODES:
        raise ValueError(f"--micro must be one of {MICRO_MODES}, got {micro!r}")
    if units not in UNITS:
        raise ValueError(f"--units must be one of {UNITS}, got {units!r}")
    if n_samples is not None:
        _integer("--samples", n_samples, low=1, fix="give the number of sequences, e.g. --samples 2048")
    if seq_len is not None:
        _integer("--seq-len", seq_len, low=1, fix="give the tokens per sequence, e.g. --seq-len 8")
    _integer("--data-seed", data_seed, low=0)
    _integer("capture_batch", capture_batch, low=1)
    if chunk_size is not None:
        _integer("--chunk-size", chunk_size, low=1, fix="give MI problems per compiled call, or leave it out "
                                                         "for the default")
    seeds = _as_list(seeds)
    if not seeds:
        raise ValueError("--seeds is empty: give at least one seed, e.g. --seeds 0")
    for s in seeds:
        _integer("--seeds", s, low=0)
    if layers is not None:
        layers = _as_list(layers)
        if not layers:
            raise ValueError("--layers is empty: give block indices such as 0-5,10 or leave it out for all")
        for layer in layers:
            _integer("--layers", layer, low=0)
    if name == "noise":
        check_sigmas(sigma)
    elif sigma is not None:
        raise ValueError(f"sigma applies to estimator='noise' only (--estimator noise); the estimator is {name!r}")
    if isinstance(data, str):
        check_data_spec(data, seq_len)
    check_settings(name, protocol, dict(overrides or {}))
    if out is not None:
        check_output_dir(out)


def check_sigmas(sigma) -> None:
    """Noise levels: None (the defaults) or positive finite numbers."""
    if sigma is None:
        return
    values = _as_list(sigma)
    if not values:
        raise ValueError("--sigma is empty: give noise levels such as --sigma 0.1,0.3,1")
    for v in values:
        if not _is_real(v) or not math.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"--sigma must hold positive finite numbers, got {_show(v)}: e.g. --sigma 0.1,0.3,1")


def check_data_spec(spec: str, seq_len=None) -> None:
    """A data spec's form, without reading files or tokenising: icl:CATEGORY, text:kjv|PATH, gaussian[:VAR]."""
    from ie_jax.ie import data as data_lib

    kind, _, arg = spec.partition(":")
    if kind == "icl":
        category = data_lib.ALIASES.get(arg or "country", arg or "country")
        if category not in data_lib.ENTITIES:
            raise ValueError(f"unknown ICL category {arg!r} in {spec!r}: use one of {sorted(data_lib.ENTITIES)}")
        if seq_len is not None and (seq_len < 2 or seq_len % 2):
            raise ValueError(f"ICL lists have 2 tokens per shot (entity, comma): --seq-len must be even and "
                             f">= 2, got {seq_len}")
    elif kind == "text":
        if not arg:
            raise ValueError("text data needs a source: text:kjv or text:PATH")
        if arg != "kjv":
            path = pathlib.Path(arg)
            if not path.exists():
                raise ValueError(f"text file not found: {path} (in --data {spec}): give an existing .txt or .jsonl")
            if not path.is_file():
                raise ValueError(f"{path} is not a file (in --data {spec}): give a .txt or .jsonl file")
            if not os.access(path, os.R_OK):
                raise ValueError(f"{path} is not readable (in --data {spec}): fix its permissions")
    elif kind == "gaussian":
        if arg:
            data_lib.gaussian_variance(arg)
    elif spec != "tokens:random":
        raise ValueError(f"unknown data spec {spec!r}: use icl:CATEGORY ({', '.join(data_lib.ENTITIES)}), "
                         f"text:kjv, text:PATH (.jsonl/.txt), gaussian[:VARIANCE] or tokens:random")


def estimator_defaults(name: str, protocol: str) -> dict:
    """Every setting the estimator `name` accepts, with its default value (None where it has none)."""
    if name == "neural":
        import dataclasses

        from ie_jax.mi.protocols import PROTOCOLS, RUN_OPTIONS
        from ie_jax.mi.train import TrainConfig

        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        defaults.update({k: None for k in RUN_OPTIONS})
        defaults.update(PROTOCOLS[protocol])
        return defaults
    if name == "noise":
        from ie_jax.mi.noise import noise_mi_batch as fn
    elif name == "exact_discrete":
        from ie_jax.mi.discrete import exact_discrete_mi as fn
    else:
        from ie_jax.mi.gaussian import gaussian_mi as fn
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind == p.KEYWORD_ONLY and p.name not in RESERVED}


def check_settings(name: str, protocol: str, overrides: dict) -> None:
    """Estimator settings: known keys, values of the default's type, finite and in range."""
    defaults = estimator_defaults(name, protocol)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for the {name} estimator: use any of {sorted(defaults)}")
    for key, value in overrides.items():
        _check_setting(name, key, value, defaults[key])
    if name == "neural":
        from ie_jax.mi.protocols import resolve

        resolve(protocol, overrides)  # its own checks (bound, critic, schedule, readout, test_fraction, ...)
    elif name == "noise":
        from ie_jax.mi.noise import DTYPES, NORMALISERS

        for key, allowed in (("dtype", DTYPES), ("normaliser", NORMALISERS)):
            if key in overrides and overrides[key] not in allowed:
                raise ValueError(f"--set {key}={overrides[key]!r}: use one of {allowed}")


def _check_setting(estimator: str, key: str, value, default) -> None:
    where = f"--set {key}={value!r}"
    if key in CHECKED_BY_RESOLVE:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} is True or False")
        return
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key} is a word, e.g. --set {key}={default}")
        return
    if key == "hidden":
        if value is not None and not (isinstance(value, (tuple, list)) and value
                                      and all(_is_int(h) and h >= 1 for h in value)):
            raise ValueError(f"{where}: hidden is a tuple of layer widths, e.g. --set hidden=(256,256)")
        return
    if isinstance(default, numbers.Real) or default is None and key in POSITIVE | NON_NEGATIVE | AT_LEAST_TWO:
        if value is None and key in NONE_ALLOWED:
            return
        want_int = isinstance(default, numbers.Integral) or key in AT_LEAST_TWO | {"max_problems_per_chunk",
                                                                                   "memory_budget_bytes"}
        if want_int and not _is_int(value):
            raise ValueError(f"{where}: {key} is a whole number" + (f", e.g. --set {key}={default}" if default else ""))
        if not _is_real(value) or not math.isfinite(float(value)):
            raise ValueError(f"{where}: {key} is a finite number" + (f", e.g. --set {key}={default}"
                                                                     if default is not None else ""))
        low = 2 if key in AT_LEAST_TWO else 0
        if key in POSITIVE and value <= 0 or key in NON_NEGATIVE and value < 0 or key in AT_LEAST_TWO and value < low:
            bound = "> 0" if key in POSITIVE else ">= 0" if key in NON_NEGATIVE else ">= 2"
            raise ValueError(f"{where}: {key} must be {bound} for the {estimator} estimator")


def check_model(lm, layers=None) -> None:
    """Finite weights and block indices within the model (both would otherwise fail after capture)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    num_layers = lm.config.num_layers
    if layers is not None:
        bad = [int(l) for l in layers if not 0 <= int(l) < num_layers]
        if bad:
            raise ValueError(f"--layers {bad} out of range: {lm.name} has blocks 0..{num_layers - 1}")
    state = nnx.state(lm.module, nnx.Param)
    leaves = jax.tree_util.tree_leaves_with_path(state)
    arrays = [getattr(leaf, "value", leaf) for _, leaf in leaves]
    checked = _FINITE_WEIGHTS.get(lm.module)
    if checked is not None and len(checked) == len(arrays) and all(a is b for a, b in zip(checked, arrays)):
        return  # these very arrays (immutable) passed before: a sweep of many measure() calls checks once
    for (path, _), arr in zip(leaves, arrays):
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            continue
        n_bad = int(jnp.sum(~jnp.isfinite(arr)))  # counted where the weights are: one number comes back
        if n_bad:
            name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
            raise ValueError(f"model {lm.name} has NaN or inf weights in {name} ({n_bad} entries): the checkpoint "
                             f"is damaged; load another copy")
    try:
        _FINITE_WEIGHTS[lm.module] = arrays
    except TypeError:  # a module that takes no weak reference is simply checked every time
        pass


def check_capture(lm, dataset, layers, micro: str, token_curve: bool) -> None:
    """The captured states fit in memory (ie_jax.ie.variables' own check, run before the run directory is claimed)."""
    from ie_jax.ie.variables import check_host_memory, states_nbytes

    check_host_memory(states_nbytes(lm, dataset, layers=layers, micro=micro, token_curve=token_curve))


def check_output_dir(out) -> None:
    """The run directory exists (created empty if new) and takes files; refuses a file or an unwritable path.

    The probe writes and removes one temporary file: permission bits alone do not tell (root, read-only mounts).
    """
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory: give a new or empty directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except (NotADirectoryError, FileExistsError) as e:
        raise ValueError(f"--out {out}: {e.filename or out} on its path is a file, not a directory: choose another "
                         f"--out") from e
    except OSError as e:
        raise ValueError(f"--out {out} cannot be written ({e.strerror}: {e.filename or out}): choose a directory "
                         f"you can write to") from e


def _as_list(values) -> list:
    """A list of the values of a sequence (list, tuple, range, numpy array), or [values] for a single one."""
    return list(values) if hasattr(values, "__iter__") and not isinstance(values, (str, bytes)) else [values]


def _integer(name: str, value, *, low: int, fix: str = "") -> None:
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {_show(value)}" + (f": {fix}" if fix else ""))


def _show(v) -> str:
    """A number as it is written (numpy scalars included), anything else as its repr."""
    return str(v) if _is_real(v) else repr(v)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
