"""A scalar UDF whose module imports numpy (a single-phase-init extension
that cannot load in a sub-interpreter)."""
import numpy as np


def double(x):
    return int(np.int64(x) * 2)
