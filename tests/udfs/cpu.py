"""A CPU-bound pure-Python UDF: about 10 µs a call on these machines."""


def spin(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
