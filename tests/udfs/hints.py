"""Vectorized UDFs whose annotations choose their containers, as PySpark's
pandas_udf reads them."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def pandas_inc(s: pd.Series) -> pd.Series:
    """A PySpark pandas UDF body, unchanged."""
    assert isinstance(s, pd.Series), type(s)
    return s + 1


def numpy_mix(xs: np.ndarray, ys: "np.ndarray") -> np.ndarray:
    assert isinstance(xs, np.ndarray) and isinstance(ys, np.ndarray)
    return xs * 10 + ys


def arrow_upper(s: pa.Array) -> pa.Array:
    assert isinstance(s, pa.Array), type(s)
    return pc.utf8_upper(s)


def mixed(xs: list, s: pd.Series, *rest: np.ndarray):
    assert isinstance(xs, list) and isinstance(s, pd.Series)
    assert all(isinstance(r, np.ndarray) for r in rest)
    return [x + int(v) + int(sum(r[i] for r in rest)) for i, (x, v) in enumerate(zip(xs, s))]


def pandas_mean(s: pd.Series) -> float:
    """A scalar result: broadcast to every row."""
    return float(s.mean())


def arrow_pack(*columns: pa.Array) -> pa.Array:
    """Every column back as one struct, through pyarrow: each argument must
    arrive as a pyarrow Array of its Arrow type."""
    assert all(isinstance(c, pa.Array) for c in columns), [type(c) for c in columns]
    return pa.StructArray.from_arrays(
        list(columns), names=[f"f{i}" for i in range(len(columns))])


def arrow_len_type(s: pa.Array) -> pa.Array:
    """A pyarrow result of another type than declared (large_string for
    utf8): taken value by value."""
    return pc.utf8_upper(s).cast(pa.large_string())


def series_of_ints(s: pd.Series) -> "pd.Series[int]":
    return s * 2


def floats32(x: np.ndarray) -> "npt.NDArray[np.float32]":
    return (x / 2).astype(np.float32)


def bare_series(s: pd.Series) -> pd.Series:
    return s
