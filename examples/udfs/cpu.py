"""A CPU-bound pure-Python UDF: spin(3000) takes about 100 µs here."""


def spin(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
