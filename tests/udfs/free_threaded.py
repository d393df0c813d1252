"""UDFs for free-threaded CPython (issue 26): what a UDF sees of the GIL,
and a mix of faults and races for many executor threads at once."""
import hashlib
import os
import sys
import threading

# Module state every executor thread of multi-thread mode shares, changed
# without a lock: the UDF's bug, which must never become coil's.
_shared = {}
_log = []


def gil_on(x):
    """Whether the GIL is on while this UDF runs (False on a free-threaded
    CPython that kept it off)."""
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def thread_id(x):
    return threading.get_ident()


def imports_legacy_when_called(x):
    """Imports an extension module that has not declared free-threading
    support (built by the test, on python.files) on its first call."""
    import legacy_ext  # noqa: F401
    return x + 1


def answer(x):
    """What chaos answers for a row that does not fail."""
    return int(hashlib.sha256(str(x).encode()).hexdigest()[:12], 16) + x


def chaos(x):
    """Fails rows by kind: raises (x % 101 == 7), spins until coil's
    timeout interrupts it (x % 257 == 11), asks to end the host (x % 53 ==
    5; refused in process); every row races on module state, and the
    others answer answer(x)."""
    key = x % 8
    _shared[key] = _shared.get(key, 0) + 1
    _log.append(x)
    if len(_log) > 64:
        del _log[:32]
    if x % 101 == 7:
        raise ValueError(f"row {x} raises")
    if x % 257 == 11:
        while True:
            pass
    if x % 53 == 5:
        os._exit(3)
    return answer(x)


def chatty(x):
    """Prints a line in many pieces (print writes each argument and the
    newline separately), from every executor thread at once."""
    print("row", x, "of the chatty UDF", "=" * 40)
    return x
