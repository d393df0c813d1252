"""Vectorized aggregates in the PySpark grouped-aggregate shape (need
numpy, pandas and pyarrow: tests/requirements.txt)."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def mean_sq(v: pd.Series) -> float:
    return float((v * v).mean())


def np_range(v: np.ndarray) -> int:
    return v.max() - v.min()


def pa_sum(v: pa.Array) -> int:
    return pc.sum(v).as_py()


def wmean(v: pd.Series, w: pd.Series) -> float:
    return float((v * w).sum() / w.sum())


def first_index(v: pd.Series) -> int:
    """The group's Series is indexed from 0."""
    return int(v.index[0])


def running_share(v: pd.Series) -> "pd.Series[float]":
    """Over a whole partition (in ORDER BY order): each row's running sum
    as a share of the partition's sum."""
    return v.cumsum() / v.sum()


running_share.coil_kind = "window"
