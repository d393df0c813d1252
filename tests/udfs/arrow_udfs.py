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
