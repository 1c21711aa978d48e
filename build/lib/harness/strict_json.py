"""Strict JSON: NaN and infinities become null.

Python's `json` writes `NaN`, which is not JSON: SQLite's JSON functions, browsers'
`JSON.parse` and most tools reject it. An undefined metric or an unmeasured figure is
`null` wherever the harness writes JSON (the store, baselines, the report's plots).
"""

from __future__ import annotations

import json
import math
from typing import Any


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(json_safe(value), default=str, allow_nan=False, **kwargs)
