"""JSON that every parser reads: Python's `json` writes nan and inf as the bare words `NaN`
and `Infinity`, which are not JSON. Here a non-finite float becomes `null`, and whoever writes
the object says beside it that a value was not finite."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float (in nested dicts and lists) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def all_finite(value: Any) -> bool:
    """Whether every float in `value` (nested dicts and lists) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(all_finite(v) for v in value)
    return True


def dumps(value: Any) -> str:
    """One line of strict JSON; non-finite floats are written as null."""
    return json.dumps(finite_or_none(value), allow_nan=False)
