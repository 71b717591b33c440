"""The one JSON helper: numpy/jax values inside dicts, lists and tuples -> plain Python that `json` writes.

`jsonable(obj)` keeps NaN as float NaN (Python's json writes it as the non-standard `NaN`);
`jsonable(obj, nan_to_null=True)` writes NaN as null so the file is strict JSON. Infinities are kept.
"""

from __future__ import annotations

import json
import math

import numpy as np


def jsonable(obj, *, nan_to_null: bool = False):
    """obj with numpy/jax arrays and scalars turned into lists, floats, ints and bools; dict keys as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, nan_to_null=nan_to_null) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, nan_to_null=nan_to_null) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return None if nan_to_null and math.isnan(value) else value
    if hasattr(obj, "tolist"):  # numpy or jax arrays
        return jsonable(obj.tolist(), nan_to_null=nan_to_null)
    return obj


def dumps(obj, *, indent: int = 1) -> str:
    """Strict JSON text of obj (NaN written as null)."""
    return json.dumps(jsonable(obj, nan_to_null=True), indent=indent)
