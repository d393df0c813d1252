"""UDFs that take too much memory, for tests/limits.rs."""
HELD = []


def big_on_three(x: int) -> int:
    """x, but row 3 asks for 4 GiB at once."""
    if x == 3:
        return len(bytearray(4 << 30))
    return x


def leaks(x: int) -> int:
    """x, keeping 40 MiB more of every row it sees."""
    HELD.append(bytearray(40 << 20))
    return x
