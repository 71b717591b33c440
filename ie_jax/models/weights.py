"""Checkpoint tensors -> nnx parameters, driven by a weight map that is data.

A weight map is a sequence of `(key_regex, param_path, transform)` rows:
  - key_regex matches a whole checkpoint key. If it has a capture group, the group is the layer index and
    the parameter is stacked on a leading layer axis (blocks run under a scan), so one row covers all layers.
  - param_path is the dotted path of the parameter in the nnx module (e.g. "blocks.attn.q_proj.kernel").
  - transform names a function in TRANSFORMS (or in the `transforms` given by the architecture) applied to
    the tensor before it is placed, e.g. "transpose" for torch's [out, in] Linear weight -> nnx's [in, out].

`fill_params` reports every unmapped key, missing parameter (or missing layer of one) and shape mismatch
in ONE ValueError, so a wrong map is fixed in one pass instead of one key at a time.
"""

import re
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

WeightMap = Sequence[tuple[str, str, str]]

TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda x: x,
    "transpose": lambda x: x.T,
}

_MAX_LISTED = 25


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {item}" for item in shown) + more


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _unflatten(flat: Mapping[str, object]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(int(part) if part.isdigit() else part, {})
        node[int(leaf) if leaf.isdigit() else leaf] = value
    return tree


def fill_params(
    abstract_model: nnx.Module,
    tensors: Mapping[str, object],
    weight_map: WeightMap,
    *,
    transforms: Mapping[str, Callable] | None = None,
    ignore: Sequence[str] = (),
    source: str = "checkpoint",
) -> nnx.Module:
    """A concrete model: `abstract_model` (from nnx.eval_shape) with every parameter taken from `tensors`.

    tensors: checkpoint key -> array (anything np.asarray accepts; read lazily, one key at a time).
    ignore: regexes of checkpoint keys that are deliberately unused (e.g. rotary caches, pooler heads).
    Each parameter is cast to the abstract parameter's dtype (fp32 or bf16).
    Raises ValueError naming all unmapped keys, missing parameters/layers and shape mismatches at once.
    """
    transforms = {**TRANSFORMS, **(transforms or {})}
    graphdef, abstract_state = nnx.split(abstract_model)
    targets = _flatten(nnx.to_pure_dict(abstract_state))
    rows = [(re.compile(pattern), path, name) for pattern, path, name in weight_map]

    errors: dict[str, list[str]] = {"unmapped keys": [], "shape mismatches": [], "map errors": []}
    buffers: dict[str, np.ndarray] = {}
    filled: dict[str, set[int]] = {path: set() for path in targets}
    for key in tensors.keys():
        # Ignored first: e.g. a tied model's stored copy of the head also matches the head's map row.
        if any(re.fullmatch(pattern, key) for pattern in ignore):
            continue
        row = next(((rx, path, name) for rx, path, name in rows if rx.fullmatch(key)), None)
        if row is None:
            errors["unmapped keys"].append(key)
            continue
        rx, path, name = row
        if path not in targets:
            errors["map errors"].append(f"{key} -> {path}: the model has no parameter {path!r}")
            continue
        if name not in transforms:
            errors["map errors"].append(f"{key}: unknown transform {name!r} (known: {sorted(transforms)})")
            continue
        target = targets[path]
        layer = int(rx.fullmatch(key).group(1)) if rx.groups else None
        want = tuple(target.shape[1:]) if layer is not None else tuple(target.shape)
        if layer is not None and not 0 <= layer < target.shape[0]:
            errors["map errors"].append(f"{key}: layer {layer} outside the model's {target.shape[0]} layers")
            continue
        value = np.asarray(transforms[name](np.asarray(tensors[key])))
        if value.shape != want:
            errors["shape mismatches"].append(
                f"{key} -> {path}: checkpoint {value.shape} (after {name!r}), model expects {want}"
            )
            continue
        if layer is None:
            buffers[path] = value.astype(target.dtype)
            filled[path].add(0)
        else:
            if path not in buffers:
                buffers[path] = np.zeros(target.shape, dtype=target.dtype)
            buffers[path][layer] = value
            filled[path].add(layer)

    missing = []
    for path, target in targets.items():
        expected = set(range(target.shape[0])) if _is_stacked(path, rows) else {0}
        lacking = sorted(expected - filled[path])
        if lacking == sorted(expected):
            missing.append(path)
        elif lacking:
            missing.append(f"{path} (layers {lacking})")
    problems = {**errors, "missing parameters": missing}
    if any(problems.values()):
        report = "\n".join(_listing(title, items) for title, items in problems.items() if items)
        raise ValueError(f"Cannot load the {source} into {type(abstract_model).__name__}:\n{report}")

    state = nnx.State(abstract_state)
    # Pop each host buffer as it moves to the device, so peak memory is one copy plus one parameter.
    nnx.replace_by_pure_dict(state, _unflatten({p: jnp.asarray(buffers.pop(p)) for p in list(buffers)}))
    return nnx.merge(graphdef, state)


def _is_stacked(path: str, rows) -> bool:
    return any(rx.groups for rx, row_path, _ in rows if row_path == path)
