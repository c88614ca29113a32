"""errors.translating: the one place a layer's exceptions become the next layer's, for plain and generator functions."""
from __future__ import annotations

import pytest

from reliability.errors import StoreError, translating


def as_store_error(exc):
    return StoreError(f"refused: {exc}")


def test_a_plain_function_raises_the_converted_error_with_the_original_as_cause():
    def fail():
        raise OSError("disk full")

    with pytest.raises(StoreError, match="refused: disk full") as info:
        translating(fail, OSError, as_store_error)()
    assert isinstance(info.value.__cause__, OSError)


def test_a_generator_is_converted_while_it_runs_and_keeps_what_it_yielded():
    def rows():
        yield 1
        raise OSError("locked")

    got = []
    with pytest.raises(StoreError, match="locked"):
        for row in translating(rows, OSError, as_store_error)():
            got.append(row)
    assert got == [1]


def test_other_exceptions_pass_and_a_converter_may_keep_the_exception():
    def fail():
        raise ValueError("bad")

    with pytest.raises(ValueError):
        translating(fail, OSError, as_store_error)()
    with pytest.raises(ValueError) as info:
        translating(fail, ValueError, lambda exc: exc)()
    assert info.value.__cause__ is None
