"""Typed reads of model config / metadata values (config.json, GGUF metadata).

Every reader takes the raw value as parsed (JSON or GGUF), the field's name and
the file, and returns a Python int / float / bool or raises `ModelFileError`
naming both: ``int("wide")`` would name neither.
"""

import math

from tflm.models.errors import ModelFileError

REQUIRED = object()


def _bad(value, field, path, what):
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ModelFileError(f"field {field!r} must be {what}, got {shown}", path=path, field=field)


def integer(value, field, path, minimum=1):
    """`value` as an int >= `minimum` (JSON/GGUF integers, or integral floats such as 2.0)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(value, field, path, "an integer" if minimum is None else f"an integer >= {minimum}")
    if minimum is not None and value < minimum:
        raise _bad(value, field, path, f"an integer >= {minimum}")
    return value


def number(value, field, path, positive=False, fraction=False):
    """`value` as a finite float (> 0 when `positive`, in [0, 1] when `fraction`, e.g. a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(value, field, path, "a finite number")
    if positive and value <= 0:
        raise _bad(value, field, path, "a positive number")
    if fraction and not 0 <= value <= 1:
        raise _bad(value, field, path, "a number in [0, 1]")
    return float(value)


def boolean(value, field, path):
    """`value` as a bool (JSON true / false, GGUF bool; 0 and 1 too)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _bad(value, field, path, "true or false")


def text(value, field, path):
    if not isinstance(value, str):
        raise _bad(value, field, path, "a string")
    return value


def read(config, key, kind, path, default=REQUIRED, **kwargs):
    """``kind(config[key], key, path)``; `default` (returned as is) when the key is absent or null."""
    value = config.get(key)
    if value is None:
        if default is REQUIRED:
            raise ModelFileError(f"lacks required field {key!r}", path=path, field=key)
        return default
    return kind(value, key, path, **kwargs)
