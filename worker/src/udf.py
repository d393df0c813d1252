# coil's loader and error formatter, run once inside each interpreter that
# hosts a UDF. Kept in Python: it is Python's import machinery it drives.
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback


def use_environment(sys_path, site_dirs):
    """Make this interpreter import what another environment's python does:
    its sys.path exactly, then its site directories' .pth files run (they
    may import, e.g. editable installs' finders)."""
    if not sys_path:
        return
    import site
    sys.path[:] = list(sys_path)
    for d in site_dirs:
        site.addsitedir(d)


_ACCUMULATOR = ("create_accumulator", "accumulate", "get_value")


def is_accumulator(obj):
    """Whether OBJ (a class or an instance) has PyFlink's AggregateFunction
    methods: create_accumulator(), accumulate(acc, *args), get_value(acc)."""
    return all(callable(getattr(obj, m, None)) for m in _ACCUMULATOR)


def load(target, paths, sys_path=(), site_dirs=(), kind="scalar"):
    """Import TARGET ("path/to/file.py:name" or "package.module:name") with
    PATHS prepended to sys.path (that of another environment if SYS_PATH is
    given); return (callable, instance or None, numpy?, described, written
    as, GIL). DESCRIBED is the function whose signature says the UDF's
    parameters and result (for an aggregate: accumulate's arguments after
    the accumulator, get_value's result); WRITTEN AS is the kind the
    definition itself says ("aggregate", "vectorized-aggregate", "table")
    or None; GIL is what gil_enabled_by() says once it has loaded."""
    if not free_threaded():
        return _load(target, paths, sys_path, site_dirs, kind) + (None,)
    _watch_gil_warnings()
    import warnings
    # CPython turns the GIL back on when it imports an extension module
    # that has not declared free-threading support, and says which in a
    # RuntimeWarning: catch it to name the module. On free-threaded 3.14
    # catch_warnings is per thread (sys.flags.context_aware_warnings), so
    # executors loading at once do not see each other's warnings.
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message=_GIL_WARNING_TEXT,
                                category=RuntimeWarning)
        loaded = _load(target, paths, sys_path, site_dirs, kind)
    for w in caught:
        culprit = _GIL_WARNING.search(str(w.message))
        if culprit:
            # Kept on sys, for every executor of this interpreter to name
            # it: only the first import of the module warns.
            sys.__dict__.setdefault("_coil_gil_module", culprit.group(1))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename,
                                   w.lineno, source=w.source)
    return loaded + (gil_enabled_by(),)


_GIL_WARNING_TEXT = r"The global interpreter lock \(GIL\) has been enabled"
_GIL_WARNING = re.compile(
    _GIL_WARNING_TEXT + r" to load module '([^']+)'")


def _watch_gil_warnings():
    """Once per interpreter: notes on sys the module named by the first
    warning that CPython turned the GIL back on, whenever it comes (an
    import inside the UDF, at call time), before showing it as before."""
    import warnings
    claim = object()
    if sys.__dict__.setdefault("_coil_gil_watch", claim) is not claim:
        return
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        culprit = _GIL_WARNING.search(str(message))
        if culprit:
            sys.__dict__.setdefault("_coil_gil_module", culprit.group(1))
        return shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


def free_threaded():
    """Whether this CPython is a free-threaded build (PEP 703)."""
    import sysconfig
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled_by():
    """On a free-threaded CPython whose GIL is on: the module whose import
    turned it on ("" when no import did: PYTHON_GIL=1 or -X gil=1, or a
    module imported before coil watched); None while the GIL is off, and
    always on a build with a GIL."""
    enabled = getattr(sys, "_is_gil_enabled", None)
    if enabled is None or not free_threaded() or not enabled():
        return None
    return getattr(sys, "_coil_gil_module", None) or ""


def _load(target, paths, sys_path, site_dirs, kind):
    use_environment(sys_path, site_dirs)
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    module_part, sep, name = target.rpartition(":")
    if not sep or not module_part or not name:
        raise ValueError(
            f"a UDF is FILE.py:NAME or package.module:NAME, got {target!r}")
    if module_part.endswith(".py") or os.sep in module_part:
        path = os.path.abspath(module_part)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"UDF file not found: {path}")
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    obj = module
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(
                f"{module_part} has no attribute {name!r}") from None
    instance = None
    accumulator = is_accumulator(obj) and not callable(getattr(obj, "eval", None))
    if kind == "aggregate" or (accumulator and kind == "scalar"):
        if not is_accumulator(obj):
            raise TypeError(
                f"{name} in {module_part} is not an aggregate function: an "
                f"aggregate is a class with create_accumulator(), "
                f"accumulate(acc, *args) and get_value(acc) (PyFlink's "
                f"AggregateFunction methods; merge(acc, accs) and "
                f"retract(acc, *args) where the engine needs them)")
        instance = obj() if isinstance(obj, type) else obj
        _open(instance)
        described = _described(instance.accumulate, instance.get_value)
        if kind == "aggregate":
            fn = aggregate_step(instance, name)
        else:
            fn = _wrong_kind(name, "an aggregate function (an accumulator class)",
                             "aggregate")
        return fn, instance, False, described, "aggregate"
    if isinstance(obj, type):
        instance = obj()
        if not callable(getattr(instance, "eval", None)):
            raise TypeError(f"class {name} in {module_part} has no eval method")
        _open(instance)
        fn = instance.eval
    elif callable(obj):
        fn = obj
    else:
        raise TypeError(f"{name} in {module_part} is not callable")
    wants_numpy = bool(getattr(obj, "coil_numpy", False))
    declared = getattr(obj, "coil_kind", None)
    return fn, instance, wants_numpy, fn, declared or written_as(fn, wants_numpy)


def _open(instance):
    """Calls INSTANCE's open(), if it has one: with no argument, or with
    None where it takes one (PyFlink's open(function_context): coil has no
    function context to give)."""
    opener = getattr(instance, "open", None)
    if not callable(opener):
        return
    try:
        params = [p for p in inspect.signature(opener).parameters.values()
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  and p.default is inspect.Parameter.empty]
    except (TypeError, ValueError):
        params = []
    opened = opener(None) if params else opener()
    if inspect.isawaitable(opened):
        # An async open() (one HTTP session per executor): run on the loop
        # the executor's rows will run on.
        sys.modules["coil"].run_awaitable(opened, instance)


def _wrong_kind(name, what, kind):
    def wrong(*args):
        raise TypeError(
            f"{name} is {what}: register it as kind {kind!r}, not as a scalar function")
    return wrong


def _described(params_from, returns_from):
    """A stand-in whose signature is PARAMS_FROM's after its first
    parameter (the accumulator) and whose result is RETURNS_FROM's."""
    import typing
    try:
        params = list(inspect.signature(params_from).parameters.values())[1:]
    except (TypeError, ValueError):
        params = [inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL)]
    try:
        ret = inspect.signature(returns_from).return_annotation
    except (TypeError, ValueError):
        ret = inspect.Signature.empty
    hints = {}
    for f in (params_from, returns_from):
        try:
            hints.update(typing.get_type_hints(f))
        except Exception:
            pass
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in params]
    if "return" in hints:
        try:
            if "return" in typing.get_type_hints(returns_from):
                ret = hints["return"]
        except Exception:
            pass

    def described(*args):
        raise TypeError("a stand-in for a signature")
    described.__signature__ = inspect.Signature(params, return_annotation=ret)
    described.__annotations__ = {p.name: p.annotation for p in params
                                 if p.annotation is not inspect.Parameter.empty}
    if ret is not inspect.Signature.empty:
        described.__annotations__["return"] = ret
    return described


def written_as(fn, wants_numpy):
    """The kind FN's definition says, where it is unambiguous: "table" for a
    generator function or one annotated to return an iterator,
    "vectorized-aggregate" for one taking columns (pd.Series, np.ndarray,
    pa.Array) and returning a plain value (as PySpark infers grouped
    aggregates); None otherwise."""
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        return "table"
    ret = return_type_of(fn)
    if ret is not None and ret[0] == "iterator":
        return "table"
    _, columnar = signature(fn, wants_numpy)
    if columnar and ret is not None and ret[0] not in ("container", "tuple"):
        return "vectorized-aggregate"
    return None


def returns_column(fn):
    """Whether FN's return annotation names a column (pd.Series,
    np.ndarray, pa.Array, with or without an element type)."""
    t = return_type_of(fn)
    return t is not None and t[0] == "container"


def aggregate_step(agg, name):
    """The function an aggregate's executor calls once per group:
    step(op, state, *columns) -> (state, value), the state pickled (see
    coil_proto::AggregateOp for the ops)."""
    import pickle
    create = agg.create_accumulator
    accumulate = agg.accumulate
    get_value = agg.get_value
    merge = getattr(agg, "merge", None)
    retract = getattr(agg, "retract", None)
    loads, dumps, protocol = pickle.loads, pickle.dumps, pickle.HIGHEST_PROTOCOL

    def step(op, state, *columns):
        acc = create() if state is None else loads(state)
        if op == 2:
            if not callable(merge):
                raise TypeError(
                    f"aggregate {name} has no merge(acc, accs) method, which "
                    f"combining partial aggregates needs")
            merge(acc, [loads(s) for s in columns[0] if s is not None])
            return dumps(acc, protocol), None
        if op == 1:
            if not callable(retract):
                raise TypeError(
                    f"aggregate {name} has no retract(acc, *args) method, which "
                    f"a sliding window frame needs")
            f = retract
        else:
            f = accumulate
        if len(columns) == 1:
            for v in columns[0]:
                f(acc, v)
        elif columns:
            for vs in zip(*columns):
                f(acc, *vs)
        if op == 3:
            return None, get_value(acc)
        return dumps(acc, protocol), None
    return step


def group_args(adapt, bases, start, end):
    """A vectorized aggregate's arguments for one group: rows START..END of
    each whole column in BASES (numpy arrays, pyarrow Arrays or lists),
    made what its annotations ask by ADAPT."""
    cols = [b[start:end] for b in bases]
    return adapt(cols) if adapt is not None else tuple(cols)


def arrow_whole(capsules):
    """A column handed over as Arrow capsules, as one pyarrow Array (a
    vectorized aggregate slices it per group)."""
    import pyarrow
    return pyarrow.array(capsules)


def plain(value):
    """A numpy scalar (np.int64, np.bool_...) as the Python value it
    holds; anything else as it is."""
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        return item()
    return value


def _container(annotation):
    """What a vectorized UDF's annotation asks for: "numpy", "pandas",
    "arrow", "list", or None (no annotation, or one coil does not know).
    Annotations may be objects or strings (`from __future__ import
    annotations`)."""
    if annotation is inspect.Parameter.empty or annotation is None:
        return None
    if isinstance(annotation, str):
        name = annotation.replace(" ", "")
    else:
        origin = getattr(annotation, "__origin__", None) or annotation
        qual = getattr(origin, "__qualname__", None) or getattr(origin, "__name__", "")
        name = f"{getattr(origin, '__module__', '')}.{qual}"
    n = name.lower()
    base = n.split("[")[0]
    head, _, tail = base.rpartition(".")
    package = head.split(".")[0]
    if tail == "series" and package in ("pd", "pandas"):
        return "pandas"
    if tail == "ndarray" and package in ("np", "numpy", "npt"):
        return "numpy"
    if tail.endswith("array") and package in ("pa", "pyarrow"):
        return "arrow"
    if base in ("list", "builtins.list", "typing.list"):
        return "list"
    return None


_MAKERS = {
    "numpy": ("numpy", lambda m, col: m.asarray(col)),
    # copy=False: a numpy array the executor made is the Series' own (pandas
    # would copy it again otherwise).
    "pandas": ("pandas", lambda m, col: m.Series(col, copy=False)),
    "arrow": ("pyarrow", lambda m, col: m.array(col)),
}


def vector_adapter(fn, wants_numpy):
    """For a vectorized UDF: a function turning a batch's columns (lists)
    into its arguments — numpy arrays, pandas Series or pyarrow Arrays, as
    each parameter's annotation asks (as PySpark's pandas_udf reads them),
    numpy arrays for unannotated ones if the UDF sets coil_numpy — or None
    when every argument stays a list. A package an annotation names that is
    not installed is an ImportError now, at load."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    kinds = [_container(p.annotation) for p in params if p.kind in positional]
    var = [p for p in params if p.kind == inspect.Parameter.VAR_POSITIONAL]
    rest = _container(var[0].annotation) if var else None
    if wants_numpy:
        kinds = [k or "numpy" for k in kinds]
        rest = rest or "numpy"
    wanted = {k for k in kinds + [rest] if k in _MAKERS}
    if not wanted:
        return None
    modules = {}
    for k in sorted(wanted):
        package = _MAKERS[k][0]
        try:
            modules[k] = importlib.import_module(package)
        except ImportError as e:
            raise ImportError(
                f"the UDF's arguments are annotated for {package}, which is not "
                f"installed in this Python environment (see python.requirements "
                f"and python.executable): {e}") from e

    def adapt(columns):
        out = []
        for i, col in enumerate(columns):
            k = kinds[i] if i < len(kinds) else rest
            if k in modules:
                col = _MAKERS[k][1](modules[k], col)
            elif not isinstance(col, list):
                col = col.tolist()  # a numpy array the host made; a list asked
            out.append(col)
        return tuple(out)

    adapt.kinds = kinds
    adapt.rest = rest
    return adapt


def vector_result(result, rows):
    """A vectorized UDF's result as a list: pyarrow's to_pylist(), numpy's
    and pandas' tolist(), a tuple or other sequence as a list; a scalar is
    broadcast to every row, as pandas UDFs may return one."""
    if isinstance(result, list):
        return result
    to_pylist = getattr(result, "to_pylist", None)
    if callable(to_pylist):
        return to_pylist()
    tolist = getattr(result, "tolist", None)
    if callable(tolist):
        value = tolist()
        return value if isinstance(value, list) else [value] * rows
    if isinstance(result, (str, bytes, bytearray, dict)) or not hasattr(result, "__len__"):
        return [result] * rows
    return list(result)


class ArrowCapsules:
    """An Arrow array the executor hands over without a copy: the Arrow
    PyCapsule protocol (pyarrow.array() imports it)."""

    __slots__ = ("_schema", "_array")

    def __init__(self, schema, array):
        self._schema = schema
        self._array = array

    def __arrow_c_array__(self, requested_schema=None):
        return self._schema, self._array


class ColumnView:
    """A read-only numpy view of an Arrow column's values, without a copy:
    numpy.asarray() of it makes an array whose base is this object, which
    holds `owner` (a capsule holding the Arrow buffer), so the memory lives
    as long as any array over it does, and is never another batch's."""

    __slots__ = ("__array_interface__", "_owner")

    def __init__(self, owner, address, rows, typestr):
        self._owner = owner
        self.__array_interface__ = {
            "version": 3,
            "shape": (rows,),
            "typestr": typestr,
            "data": (address, True),  # read-only
        }


def vector_out(result, rows):
    """A vectorized UDF's result for an Arrow column: a 1-D numpy array of
    a numeric dtype as it is (copied as one buffer), else a list as
    vector_result gives it; pandas' missing values (NA, NaT) as None."""
    kind = type(result).__module__.split(".")[0]
    if hasattr(result, "__arrow_c_array__"):
        return result  # imported whole when of the declared type
    if kind == "pyarrow" and hasattr(result, "combine_chunks"):
        return result.combine_chunks()
    if kind == "numpy" and getattr(result, "ndim", 0) == 1 \
            and result.dtype.kind in "iuf":
        return result
    if kind == "pandas" and hasattr(result, "dtype"):
        if type(result.dtype).__module__.split(".")[0] == "numpy" \
                and result.dtype.kind in "iuf":
            return result.to_numpy()
        if result.dtype.kind not in "iufb" or result.hasnans:
            import pandas
            return [None if v is pandas.NA or v is pandas.NaT else v
                    for v in result.tolist()]
    return vector_result(result, rows)


def arrow_kit():
    """The types Arrow's temporal and decimal values become, from this
    interpreter's own modules."""
    import datetime
    import decimal
    utc = datetime.timezone.utc
    return (datetime.date, datetime.time, datetime.datetime, datetime.timedelta,
            decimal.Decimal, datetime.datetime(1970, 1, 1),
            datetime.datetime(1970, 1, 1, tzinfo=utc), utc)


def tzinfo(name):
    """The tzinfo of an Arrow time zone: a fixed offset ("+05:30") as a
    datetime.timezone, "UTC" as datetime.timezone.utc, a name from the IANA
    database ("Europe/Paris") as a zoneinfo.ZoneInfo."""
    import datetime
    import re
    if name in ("UTC", "utc", "Z", "Etc/UTC"):
        return datetime.timezone.utc
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", name)
    if m:
        offset = datetime.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return datetime.timezone(-offset if m.group(1) == "-" else offset)
    import zoneinfo
    return zoneinfo.ZoneInfo(name)


def close(instance):
    closer = getattr(instance, "close", None)
    if callable(closer):
        closed = closer()
        if inspect.isawaitable(closed):
            sys.modules["coil"].run_awaitable(closed, instance)


def blocker(exc):
    """The message of the ImportError in EXC's chain (EXC itself, its
    __cause__ or __context__, transitively) that says a module cannot load
    in a sub-interpreter, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ImportError) and \
                "does not support loading in subinterpreters" in str(exc):
            return str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def describe(exc):
    """(type name, message, formatted traceback) of an exception."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    message = str(exc)
    limit = os.environ.get("COIL_MEMORY_LIMIT")
    if isinstance(exc, MemoryError) and limit and limit.isdigit():
        message = (f"{message or 'out of memory'} (the worker's memory limit, "
                   f"python.worker.memory-limit, is {int(limit) >> 20} MiB)")
    attempts = getattr(exc, "_coil_attempts", 0)
    if attempts > 1:
        message = f"{message} (gave up after {attempts} attempts)"
    return name, message, "".join(traceback.format_exception(exc))


class _LogWriter:
    """sys.stdout / sys.stderr of an in-process interpreter: whole lines go
    to SINK(stream, line), which logs them; nothing reaches the host's own
    stdout. Every executor thread of multi-thread mode writes here at once
    (in parallel on a free-threaded CPython): each thread keeps its own
    unfinished line, so lines are never lost, doubled or spliced together."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, sink, stream):
        import threading
        self._sink = sink
        self._stream = stream
        self._local = threading.local()

    def write(self, text):
        pending = getattr(self._local, "pending", "") + text
        while "\n" in pending:
            line, _, pending = pending.partition("\n")
            self._sink(self._stream, line)
        self._local.pending = pending
        return len(text)

    def flush(self):
        pending = getattr(self._local, "pending", "")
        if pending:
            self._local.pending = ""
            self._sink(self._stream, pending)

    def isatty(self):
        return False

    def writable(self):
        return True


def serialise_extension_imports(locked):
    """Makes this interpreter run every extension module's init through
    LOCKED(f, *args), which calls f under a process-wide lock
    (sub-interpreter mode). CPython runs a single-phase module's init before
    it refuses the module in an isolated interpreter, and inits such as GNU
    readline's are not safe to run in two interpreters at once."""
    import importlib.machinery

    loader = importlib.machinery.ExtensionFileLoader
    create, execute = loader.create_module, loader.exec_module

    def create_module(self, spec):
        return locked(create, self, spec)

    def exec_module(self, module):
        return locked(execute, self, module)

    create_module.coil_serialised = exec_module.coil_serialised = True
    loader.create_module, loader.exec_module = create_module, exec_module


def route_output(sink):
    """Sends this interpreter's stdout and stderr to SINK, once; and, since
    this interpreter runs inside the host process, makes os._exit refuse to
    end the host (a forked child may still call it) and os.fork refuse to
    copy it."""
    # Claimed with one atomic dict operation: executors of a free-threaded
    # CPython start at once, with no GIL to make a test-then-set safe.
    claim = object()
    if sys.__dict__.setdefault("_coil_routed", claim) is not claim:
        return
    sys.stdout = _LogWriter(sink, "stdout")
    sys.stderr = _LogWriter(sink, "stderr")
    _guard_exit()
    _guard_fork()


def _guard_fork():
    """A fork here copies the host: its threads' state, the other UDFs'
    interpreters, and its open output, which the child keeps open for as
    long as it lives (a reader of the host's output waits for it). Refuse
    os.fork and os.forkpty, as the sub-interpreter mode always has;
    subprocess, which runs a new program, stays allowed."""

    def refuse(name):
        def refused(*args, **kwargs):
            raise RuntimeError(
                f"os.{name}() would fork the host process: refused in coil's "
                "in-process modes (use process mode for a UDF that forks, or "
                "subprocess to run a program)")
        refused.__name__ = name
        return refused

    for name in ("fork", "forkpty"):
        if hasattr(os, name):
            setattr(os, name, refuse(name))


def _guard_exit():
    host = os.getpid()
    real_exit = os._exit

    def _exit(status):
        if os.getpid() != host:
            real_exit(status)
        raise RuntimeError(
            f"os._exit({status}) would end the host process: refused in coil's "
            "in-process modes (use process mode for a UDF that exits)")

    os._exit = _exit


# The Arrow types of annotations, as nested tuples while they are read:
# ("int64",), ("list", item), ("map", key, value), ("struct", ((name, type),
# ...)), ("timestamp", "us"), ("decimal128", 38, 18). What leaves this module
# is the type's name in coil's one type grammar (_type_name: "list<int64>",
# "timestamp[us]"), which the executor reads with coil_proto::TypeName.
_NAMED = {
    "int": ("int64",), "float": ("float64",), "str": ("utf8",),
    "bytes": ("binary",), "bool": ("bool",),
    "datetime.date": ("date32",), "date": ("date32",),
    "datetime.datetime": ("timestamp", "us"), "datetime": ("timestamp", "us"),
    "datetime.time": ("time64", "us"), "time": ("time64", "us"),
    "datetime.timedelta": ("duration", "us"), "timedelta": ("duration", "us"),
    # As Spark infers decimal.Decimal: DecimalType(38, 18).
    "decimal.Decimal": ("decimal128", 38, 18), "Decimal": ("decimal128", 38, 18),
}
_NUMPY = {"i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
          "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
          "f4": "float32", "f8": "float64", "b1": "bool"}
_CONTAINERS = ("Series", "ndarray", "NDArray", "Array")
_ITERATORS = ("Iterator", "Iterable", "Generator")


def return_type_of(fn):
    """What FN's return annotation describes (as _arrow_of describes it), or
    None."""
    try:
        ann = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return None
    if ann is inspect.Signature.empty:
        return None
    try:
        import typing
        ann = typing.get_type_hints(fn).get("return", ann)
    except Exception:
        pass
    try:
        return _arrow_of(ann)
    except Exception:
        return None


def return_type(fn, kind):
    """The name (coil's type grammar, coil_proto::TypeName) of the Arrow
    type FN's return annotation names (for KIND: "scalar",
    "vectorized" — the element of its container — or "table" — the row an
    iterator yields, a tuple's items as fields c0, c1, ...), or None when
    there is none or coil cannot tell."""
    try:
        ann = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return None
    if ann is inspect.Signature.empty:
        return None
    try:
        import typing
        ann = typing.get_type_hints(fn).get("return", ann)
    except Exception:
        pass  # a string annotation that does not evaluate: read as text
    try:
        t = _arrow_of(ann)
    except Exception:
        return None
    if t is None:
        return None
    head = t[0]
    if kind == "vectorized":
        return _type_name(t[1]) if head == "container" else None
    if kind == "table":
        if head != "iterator" or t[1] is None:
            return None
        row = t[1]
        if row[0] == "tuple":
            return _type_name(("struct", tuple((f"c{i}", f) for i, f in enumerate(row[1]))))
        return _type_name(row)
    return None if head in ("container", "iterator", "tuple") else _type_name(t)


def signature(fn, wants_numpy):
    """What FN's signature says, for an engine that plans with types (SQL):
    (params, columnar). PARAMS is a tuple of (name, type description or
    None) for each positional parameter, as return_type names types (a
    container's element for pd.Series[int] and the like), or None when FN
    takes *args. COLUMNAR is true when an annotation names a column type
    (pd.Series, np.ndarray, pa.Array) or FN sets coil_numpy: a vectorized
    UDF."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None, bool(wants_numpy)
    try:
        import typing
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    columnar = bool(wants_numpy)
    params = []
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            params = None
            continue
        if p.kind not in (inspect.Parameter.POSITIONAL_ONLY,
                          inspect.Parameter.POSITIONAL_OR_KEYWORD):
            continue
        ann = hints.get(p.name, p.annotation)
        if ann is inspect.Parameter.empty:
            described = None
        else:
            try:
                described = _arrow_of(ann)
            except Exception:
                described = None
        if described is not None and described[0] == "container":
            columnar = True
            described = described[1]
        elif described is not None and described[0] in ("iterator", "tuple"):
            described = None
        if params is not None:
            params.append((p.name, _type_name(described)))
    ret = sig.return_annotation
    if ret is not inspect.Signature.empty:
        try:
            described = _arrow_of(hints.get("return", ret))
        except Exception:
            described = None
        if described is not None and described[0] == "container":
            columnar = True
    return (None if params is None else tuple(params)), columnar


def _arrow_of(ann):
    import typing
    if ann is None or ann is type(None):
        return None
    if isinstance(ann, str):
        return _arrow_of_text(ann.replace(" ", ""))
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        base = _arrow_of(args[0])
        if base is not None and base[0] == "container" and base[1] is None and len(args) > 1:
            return ("container", _arrow_of(args[1]))
        return base
    if origin is typing.Union or type(ann).__name__ == "UnionType":
        kept = [a for a in args if a is not type(None)]
        return _arrow_of(kept[0]) if len(kept) == 1 else None
    if origin is not None:
        name = getattr(origin, "__name__", "")
        if origin is list:
            return ("list", _arrow_of(args[0])) if args else None
        if origin is dict:
            return ("map", _arrow_of(args[0]), _arrow_of(args[1])) if len(args) == 2 else None
        if origin is tuple:
            return ("tuple", tuple(_arrow_of(a) for a in args))
        if name in _ITERATORS:
            return ("iterator", _arrow_of(args[0]) if args else None)
        if name in _CONTAINERS:
            # npt.NDArray[np.int64] is ndarray[Any, dtype[int64]].
            element = args[-1] if args else None
            inner = typing.get_args(element)
            return ("container", _arrow_of(inner[0] if inner else element))
        return None
    module = getattr(ann, "__module__", "")
    name = getattr(ann, "__qualname__", getattr(ann, "__name__", ""))
    if module == "numpy" and name not in _CONTAINERS:
        import numpy
        if isinstance(ann, type) and issubclass(ann, numpy.generic):
            code = numpy.dtype(ann).str[1:]
            return (_NUMPY[code],) if code in _NUMPY else None
        return None
    if name in _CONTAINERS or name in _ITERATORS:
        return ("container", None) if name in _CONTAINERS else ("iterator", None)
    key = name if module == "builtins" else f"{module}.{name}"
    return _NAMED.get(key)


def _arrow_of_text(text):
    import re
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.+)\]", text)
    if m:
        return _arrow_of_text(m.group(1))
    if text.endswith("|None") or text.startswith("None|"):
        return _arrow_of_text(text.replace("|None", "").replace("None|", ""))
    m = re.fullmatch(r"(?:[\w.]+\.)?(\w+)\[(.+)\]", text)
    if m:
        head, inner = m.group(1), m.group(2)
        if head in ("list", "List"):
            return ("list", _arrow_of_text(inner))
        if head in _CONTAINERS:
            return ("container", _arrow_of_text(inner.split(",")[-1].strip()))
        if head in _ITERATORS:
            return ("iterator", _arrow_of_text(inner.split(",")[0]))
        return None
    tail = text.split(".")[-1]
    if tail in _CONTAINERS:
        return ("container", None)
    numpy_names = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                   "uint64", "float32", "float64"}
    if tail in numpy_names:
        return (tail,)
    return _NAMED.get(text) or _NAMED.get(tail)


def _type_name(t):
    """T (a nested tuple, as _arrow_of describes types) as coil's type
    name, or None when T or a type inside it is unknown."""
    if t is None:
        return None
    head = t[0]
    if head in ("timestamp", "time64", "duration"):
        return f"{head}[{t[1]}]"
    if head == "decimal128":
        return f"decimal128({t[1]},{t[2]})"
    if head == "list":
        item = _type_name(t[1])
        return None if item is None else f"list<{item}>"
    if head == "map":
        key, value = _type_name(t[1]), _type_name(t[2])
        return None if key is None or value is None else f"map<{key},{value}>"
    if head == "struct":
        fields = [(name, _type_name(f)) for name, f in t[1]]
        if not fields or any(f is None for _, f in fields):
            return None
        return "struct<" + ",".join(f"{name}:{f}" for name, f in fields) + ">"
    if head in ("container", "iterator", "tuple"):
        return None
    return head
