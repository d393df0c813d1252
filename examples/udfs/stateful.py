"""A class UDF with state: open() runs once per executor, eval() per row,
close() at shutdown. Each executor keeps its own state."""


class FirstSeen:
    """True the first time this executor sees a key, False afterwards."""

    def open(self):
        self.seen = set()

    def eval(self, key):
        first = key not in self.seen
        self.seen.add(key)
        return first

    def close(self):
        print(f"FirstSeen saw {len(self.seen)} distinct keys")
