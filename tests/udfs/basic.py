"""UDFs whose results the tests compare with plain Python's."""


def inc(x):
    return x + 1


def scale(x, factor):
    return x * factor


def shout(s):
    return None if s is None else s.upper() + "¡"


def reverse_bytes(b):
    return b[::-1]


def describe(x):
    return [type(x).__name__, x]


def sum_list(xs):
    return [sum(xs), len(xs), xs[::-1]]


def split_words(line):
    for i, w in enumerate(line.split()):
        yield (i, w)


def repeat(x, n):
    return [x] * n


def add_columns(xs, ys):
    return [x + y for x, y in zip(xs, ys)]


def noisy(x):
    print(f"noisy saw {x}")
    import sys
    print(f"noisy warns {x}", file=sys.stderr)
    import logging
    logging.getLogger("udf").warning("noisy logged %s", x)
    return x


class Stateful:
    def open(self):
        self.offset = 100
        self.calls = 0

    def eval(self, x):
        self.calls += 1
        return x + self.offset


def fails_on_three(x):
    if x == 3:
        raise ValueError(f"three is not allowed (got {x})")
    return x * 2


def too_big(x):
    return 2 ** 70


def unsupported(x):
    return {"a": x}


class Closes:
    """Writes how many rows it saw to the path it was given, in close()."""

    def open(self):
        self.seen = 0
        self.path = None

    def eval(self, x, path):
        self.seen += 1
        self.path = path
        return x

    def close(self):
        with open(self.path, "a") as f:
            f.write(f"{self.seen}\n")


def np_add(xs, ys):
    """Vectorized over numpy arrays (it asks for them with coil_numpy)."""
    import numpy as np

    assert isinstance(xs, np.ndarray) and isinstance(ys, np.ndarray), (type(xs), type(ys))
    return xs * 2 + ys


np_add.coil_numpy = True


def np_scalar(x):
    """Returns numpy scalars, which coil converts with .item()."""
    import numpy as np

    return [np.int64(x) * 3, np.float64(x) / 4]


def grow(s, n):
    return s * n


def interpreter_id(x):
    """The id of the interpreter running this call (0 is the main one)."""
    import _interpreters

    return _interpreters.get_current()[0]


def where_and_slow(x):
    """Which executor ran the row (process and thread), after 2 ms of
    work: a slow UDF over a small input."""
    import os
    import threading
    import time
    time.sleep(0.002)
    return f"{os.getpid()}-{threading.get_ident()}"


class _Liar(list):
    """A list whose len() disagrees with its iteration."""

    def __len__(self):
        return 1


def lying_list(x):
    return _Liar([x, x + 1, x + 2])


def starts_a_sleeper(x):
    """Starts a background process that outlives the worker, holding its
    stdout and stderr."""
    import subprocess
    subprocess.Popen(["sleep", "30"])
    return x + 1


def exits_on_500(x):
    if x == 500:
        import os
        os._exit(0)
    return x + 1


def sleeps_in_c(x):
    """Sleeps in C (no bytecode runs while it sleeps) when x is 0."""
    import time
    if x == 0:
        time.sleep(0.5)
    return x + 1
