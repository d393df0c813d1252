"""UDFs for Runner::call_arrow: Arrow columns in, one array out."""


def inc_or_none(x):
    return None if x is None else x + 1


def upper(s):
    return None if s is None else s.upper()


def describe(*args):
    """What the UDF was given: each argument's type and value."""
    return repr([(type(a).__name__, a) for a in args])


def vec_inc(xs):
    return [None if x is None else x + 1 for x in xs]


def wrong(x):
    return "nope"


def seven():
    return 7


def same(x):
    return x


def pack(*args):
    """Every argument back, as a struct's fields f0, f1, ..."""
    return {f"f{i}": a for i, a in enumerate(args)}


def vec_pack(*columns):
    """pack, vectorized: the columns as lists, one dict per row."""
    return [{f"f{i}": c[row] for i, c in enumerate(columns)}
            for row in range(len(columns[0]))]


def shapes(x):
    """What a UDF may return for an Arrow column, one by one."""
    return x


def loses_precision(x):
    import decimal
    return decimal.Decimal("1.005")


def odd_fails(x):
    if x % 2:
        raise ValueError(f"odd {x}")
    return x * 10


def vec_odd_fails(xs):
    return [odd_fails(x) for x in xs]


def words(text, n):
    """A table UDF: the first n words of text, each as (position, word)."""
    for i, word in enumerate((text or "").split()[:n]):
        yield (i, word)


def countdown(x):
    """A table UDF of one column: x, x - 1, ..., 1 (bare values); raises
    on 13."""
    if x == 13:
        raise ValueError("unlucky")
    for i in range(x, 0, -1):
        yield i
