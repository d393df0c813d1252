"""Reports what a UDF imports from: a package of the environment it was
given (coiltiny, installed by the tests from a wheel they make) and its
sys.path."""
import sys


def where(x):
    import coiltiny
    return [coiltiny.VALUE + x, list(sys.path)]


def pth_ran(x):
    """What a .pth file's import line in the environment set."""
    import os
    return os.environ.get("COIL_PTH_RAN", "")
