"""A UDF loaded as package.module:name, found through python.files."""


def tag(s):
    return f"<{s}>"
