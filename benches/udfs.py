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
