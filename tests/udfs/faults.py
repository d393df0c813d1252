"""UDFs that break their worker on the value 13 (and behave otherwise)."""
import ctypes
import mmap
import os
import signal
import struct
import time


def exits(x):
    if x == 13:
        os._exit(3)
    return x + 1


def sigkill(x):
    if x == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


def segfault(x):
    if x == 13:
        ctypes.string_at(0)
    return x + 1


def hangs(x):
    if x == 13:
        time.sleep(3600)
    return x + 1


def _ring_region():
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:coil-ring"):
                return int(fd)
        except OSError:
            pass
    raise RuntimeError("no coil ring descriptor")


def garbage(x):
    """Publishes a frame header no honest worker writes: a length far past
    what it committed, on the answer ring (ring 1)."""
    if x == 13:
        fd = _ring_region()
        size = os.fstat(fd).st_size
        m = mmap.mmap(fd, size)
        offset, capacity = struct.unpack_from("<QQ", m, 64 + 16)
        head = struct.unpack_from("<Q", m, offset)[0]
        data = offset + 128
        struct.pack_into("<IHH", m, data + (head % capacity), 0x7FFFFFF0, 0, 0)
        struct.pack_into("<Q", m, offset, head + 8)
        time.sleep(2)
    return x + 1


def exits_once(x, marker):
    """Dies the first time it sees 13, then works (for the retry test)."""
    if x == 13 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(5)
    return x + 1


def spins(x):
    """Busy in Python bytecode on 13: interruptible in-process."""
    if x == 13:
        while True:
            pass
    return x + 1


def vector_fails_on_13(xs):
    """A vectorized UDF whose whole call raises when 13 is in the batch."""
    if 13 in xs:
        raise ValueError("13 is in this batch")
    return [x + 1 for x in xs]


def odd_value_on_13(x):
    """A result coil cannot hold (a set) for 13."""
    if x == 13:
        return {x}
    return x + 1


def table_fails_on_13(x):
    """Emits a row, then raises for 13: the row fails whole."""
    yield (x,)
    if x == 13:
        raise ValueError("13 after its first row")
    yield (x + 1,)
