"""Example UDFs for `coil run`; see the README."""


def inc(x):
    """Scalar: one value per row."""
    return x + 1


def shout(s):
    """Scalar over strings."""
    return s.upper() + "!"


def words(line):
    """Table: one row per word, with its position."""
    for i, w in enumerate(line.split()):
        yield (i, w)


def add_columns(xs, ys):
    """Vectorized: whole columns in, one column out."""
    return [x + y for x, y in zip(xs, ys)]


class Counter:
    """A class UDF: open() runs once per worker, eval() per row."""

    def open(self):
        self.seen = 0

    def eval(self, x):
        self.seen += 1
        return [x, self.seen]

    def close(self):
        print(f"Counter saw {self.seen} rows")


def slug(title, stars):
    """The README's demo: a URL slug and a star bar for a product title."""
    import re
    import unicodedata

    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_title.lower())
    return ["-".join(words), "★" * stars]
