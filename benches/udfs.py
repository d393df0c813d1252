"""UDFs of the `process` benchmark."""


def inc(x):
    return x + 1


def upper(s):
    return s.upper()


def spin(n):
    """CPU-bound pure Python: about 10 µs a call with n = 280 here."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def np_inc(x: "np.ndarray") -> "np.ndarray":
    """A numpy vectorized UDF: the column as a numpy array."""
    return x + 1


def pd_inc(s: "pd.Series") -> "pd.Series":
    """A PySpark pandas UDF body, unchanged."""
    return s + 1


class PySum:
    """An accumulator class (PyFlink's methods): the sum of a group."""

    def create_accumulator(self):
        return [0]

    def accumulate(self, acc, v):
        acc[0] += v

    def merge(self, acc, accs):
        for a in accs:
            acc[0] += a[0]

    def get_value(self, acc) -> int:
        return acc[0]


def pd_mean(v: "pd.Series") -> float:
    """A pandas aggregate (PySpark's grouped-aggregate shape)."""
    return v.mean()


async def async_inc(x):
    """inc, async, never awaiting: what an event loop costs a row."""
    return x + 1


def np_heavy(x: "np.ndarray") -> "np.ndarray":
    """numpy-heavy: 20 rounds of small array operations per batch, so the
    interpreter runs between numpy's loops (where threads of a CPython with
    a GIL take turns)."""
    import numpy as np
    y = x.astype(np.float64)
    for _ in range(20):
        y = np.sqrt(y * y + 1.0) - 0.5
    return y


def pa_inc(a: "pa.Array") -> "pa.Array":
    """A pyarrow vectorized UDF: the column whole, through the Arrow C Data
    Interface, and pyarrow.compute's result back the same way."""
    import pyarrow.compute as pc
    return pc.add(a, 1)


def pa_upper(a: "pa.Array") -> "pa.Array":
    """s.upper() over a utf8 column, vectorized by pyarrow.compute."""
    import pyarrow.compute as pc
    return pc.utf8_upper(a)
