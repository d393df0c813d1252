"""UDFs whose imports fail only when they are called in a sub-interpreter
(issue 10): `_testsinglephase` is an extension module CPython builds with
its test suite (every CPython here has it) that, like numpy, uses
single-phase init and so refuses to load in one. (These UDFs imported
`readline` until two sub-interpreters importing it at once crashed a
free-threaded 3.14 process in GNU readline's history setup: CPython runs a
single-phase module's init before it refuses the module. coil now runs
extension inits one at a time across sub-interpreters; `readline_first`
is the test of that.)"""


def lazy(x):
    import _testsinglephase  # noqa: F401  (the import is the point)
    return x + 1


def lazy_late(x):
    # Rows before 500 run anywhere; from 500 on the UDF needs the module.
    if x >= 500:
        import _testsinglephase  # noqa: F401
    return x * 2


def lazy_some(x):
    # From 500 on, every other block of ten rows needs it: with
    # batches of ten, some batches fail in a sub-interpreter while the ones
    # around them succeed there.
    if x >= 500 and (x // 10) % 2:
        import _testsinglephase  # noqa: F401
    return x * 2


def readline_first(x):
    # GNU readline's single-phase init is not safe to run in two
    # sub-interpreters at once; coil runs extension inits one at a time.
    try:
        import readline  # noqa: F401  (the import is the point)
    except ModuleNotFoundError:  # a Python built without it
        pass
    return x + 1


def extension_loader_serialised(x):
    # 1 when this interpreter's extension-module loader runs inits under
    # coil's process-wide lock.
    import importlib.machinery

    create = importlib.machinery.ExtensionFileLoader.create_module
    return int(getattr(create, "coil_serialised", False))
