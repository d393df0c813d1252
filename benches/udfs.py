"""UDFs of the `process` benchmark."""


def inc(x):
    return x + 1


def upper(s):
    return s.upper()
