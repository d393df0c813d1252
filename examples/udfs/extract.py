"""JSON field extraction: pull a dotted path out of a JSON document."""
import json


def field(document, path):
    """The value at PATH ("a.b.0.c") in the JSON DOCUMENT, or None if absent."""
    value = json.loads(document)
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value
