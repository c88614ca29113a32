"""Copies of the services' records that strict JSON accepts, for the API's answers."""
from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """A copy of nested data that strict JSON accepts: NaN and ±inf become None, tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
