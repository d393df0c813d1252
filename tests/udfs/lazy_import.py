"""UDFs whose imports fail only when they are called in a sub-interpreter
(issue 10): `readline` is a standard-library extension module that refuses
to load in one, like numpy, and is present in every CPython build here."""


def lazy(x):
    import readline  # noqa: F401  (the import is the point)
    return x + 1


def lazy_late(x):
    # Rows before 500 run anywhere; from 500 on the UDF needs readline.
    if x >= 500:
        import readline  # noqa: F401
    return x * 2


def lazy_some(x):
    # From 500 on, every other block of ten rows needs readline: with
    # batches of ten, some batches fail in a sub-interpreter while the ones
    # around them succeed there.
    if x >= 500 and (x // 10) % 2:
        import readline  # noqa: F401
    return x * 2
