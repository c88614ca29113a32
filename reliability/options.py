"""Command-line option values that the CLI and the app parse alike."""
from __future__ import annotations

import json

from reliability.errors import ReliabilityError


def key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON where it parses (numbers, true/false), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ReliabilityError(f"--backend-arg {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
