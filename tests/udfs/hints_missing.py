"""Vectorized UDFs for runs without pandas installed: one annotated for
pandas (as a string, so the module itself imports nothing), one that asks
for no container."""
from __future__ import annotations


def needs_pandas(s: pd.Series) -> pd.Series:  # noqa: F821
    return s + 1


def scalar_broadcast(xs) -> int:
    """Lists in; a scalar out, broadcast to every row."""
    return len(xs)


def other_series(s: polars.Series) -> list:  # noqa: F821
    """An annotation coil does not know: the argument stays a list."""
    assert isinstance(s, list), type(s)
    return [x * 2 for x in s]
