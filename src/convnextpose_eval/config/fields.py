"""The settings the schema defines, by dotted name, and the closest one to a misspelt name.

Read from the schema (``schema.py``) alone, so the help page, the typo suggestions and the up-front checks
of a command line list exactly the same settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterator, Sequence
from typing import Any

from ..common.errors import command
from .schema import EvalConfig

# The released variants: listed once, as one line, not field by field.
TABLES = {"released": "released.<XS|S|M|L>.<field>"}


def _nested(hint: Any) -> Any:
    """The dataclass a field holds (also inside Optional), or None for a plain value."""
    if dataclasses.is_dataclass(hint):
        return hint
    return next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), None)


def schema_fields(schema: Any, prefix: str = "") -> Iterator[tuple[str, str, bool]]:
    """(dotted name, doc, is_section) for every field of ``schema``, sections before their fields."""
    hints = typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        name, doc = f"{prefix}{spec.name}", spec.metadata.get("doc", "")
        child = _nested(hints[spec.name])
        if name in TABLES:
            yield TABLES[name], doc, False
        elif child is not None:
            yield name, doc, True
            yield from schema_fields(child, f"{name}.")
        else:
            yield name, doc, False


def setting_names() -> list[str]:
    """Every dotted name a command line may set, sections (``data``, ``trainer.*`` parents) included."""
    return [name for name, _, _ in schema_fields(EvalConfig) if name not in TABLES.values()]


def closest(word: str, choices: Sequence[str]) -> str | None:
    """The choice a misspelt ``word`` most likely meant (case-insensitive), or None when none is close."""
    folded = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None


def closest_setting(name: str) -> str | None:
    """The setting a misspelt dotted ``name`` most likely meant."""
    return closest(name, setting_names())


def no_such_setting(key: str) -> str:
    """The one line for a key the schema does not have, with the closest setting when one is close."""
    best = closest_setting(key)
    guess = f"; did you mean {best}?" if best and best != key else ""
    return f"{key}: no such setting{guess} (`{command()} --help` lists them all)"


# Variant names are sizes: options are listed smallest first, other options alphabetically after them.
_SIZES = ("XS", "S", "M", "L", "XL")


def no_such_option(group: str, option: str, options: Sequence[str]) -> str:
    """The one line for a config-group option that does not exist: the closest one, and all of them."""
    ordered = sorted(options, key=lambda o: (_SIZES.index(o) if o in _SIZES else len(_SIZES), o))
    best = closest(option, ordered)
    guess = f"; did you mean {group}={best}?" if best else ""
    return f"{group}={option}: no such option{guess} ({group} is one of {', '.join(ordered)})"
