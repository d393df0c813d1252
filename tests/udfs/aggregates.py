"""Aggregate UDFs for the tests: PyFlink-style accumulator classes (their
base class dropped) and vectorized (pandas-style) aggregates."""


class Sum:
    """SUM of ints, NULLs skipped; None for a group without a value."""

    def create_accumulator(self):
        return [0, 0]  # sum, count

    def accumulate(self, acc, v: int):
        if v is not None:
            acc[0] += v
            acc[1] += 1

    def retract(self, acc, v: int):
        if v is not None:
            acc[0] -= v
            acc[1] -= 1

    def merge(self, acc, accs):
        for other in accs:
            acc[0] += other[0]
            acc[1] += other[1]

    def get_value(self, acc) -> int:
        return acc[0] if acc[1] else None


class WeightedAvg:
    """PyFlink's documented example: sum(value * weight) / sum(weight)."""

    def create_accumulator(self):
        return [0, 0]

    def accumulate(self, acc, value: int, weight: int):
        if value is not None and weight is not None:
            acc[0] += value * weight
            acc[1] += weight

    def merge(self, acc, accs):
        for other in accs:
            acc[0] += other[0]
            acc[1] += other[1]

    def get_value(self, acc) -> float:
        return None if acc[1] == 0 else acc[0] / acc[1]


class Concat:
    """The group's strings in the order they came, joined by '|'."""

    def create_accumulator(self):
        return []

    def accumulate(self, acc, s: str):
        acc.append("" if s is None else s)

    def merge(self, acc, accs):
        for other in accs:
            acc.extend(other)

    def get_value(self, acc) -> str:
        return "|".join(acc)


class NoMerge:
    """An accumulator without merge: fine until partials need combining."""

    def create_accumulator(self):
        return [0]

    def accumulate(self, acc, v: int):
        acc[0] += v or 0

    def get_value(self, acc) -> int:
        return acc[0]


class FailsOn13(Sum):
    """Sum, but raises on the value 13."""

    def accumulate(self, acc, v: int):
        if v == 13:
            raise ValueError("13 is unlucky")
        super().accumulate(acc, v)


def spread(v):
    """max - min of a group's values (plain lists: no annotations)."""
    vals = [x for x in v if x is not None]
    return max(vals) - min(vals) if vals else None


def fails_on_13(v):
    """Raises for a group holding 13."""
    if 13 in v:
        raise ValueError("a group with 13")
    return len(v)


class KilledOnce(Sum):
    """Sum whose worker is SIGKILLed the first time it sees 13 (MARKER, a
    file, says it happened)."""

    def accumulate(self, acc, v: int, marker: str):
        import os
        import signal
        if v == 13 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        super().accumulate(acc, v)


spread.coil_kind = "vectorized-aggregate"


def frame_sum(v):
    """The sum of a window frame's non-NULL values (None: none)."""
    vals = [x for x in v if x is not None]
    return sum(vals) if vals else None


frame_sum.coil_kind = "window"


class Unpicklable:
    """An accumulator whose state cannot travel (a generator inside)."""

    def create_accumulator(self):
        return [0, (x for x in ())]

    def accumulate(self, acc, v: int):
        acc[0] += v or 0

    def merge(self, acc, accs):
        pass

    def get_value(self, acc) -> int:
        return acc[0]


class PyFlinkStyle:
    """A PyFlink AggregateFunction body as written for PyFlink (its base
    class dropped): open(function_context) included."""

    def open(self, function_context):
        self.offset = 0 if function_context is None else 1

    def create_accumulator(self):
        return [0]

    def accumulate(self, accumulator, *args):
        accumulator[0] += args[0] + self.offset

    def merge(self, accumulator, accumulators):
        for other in accumulators:
            accumulator[0] += other[0]

    def get_value(self, accumulator):
        return accumulator[0]
