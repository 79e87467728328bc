"""What ``--help`` says about every setting, and the closest setting or option to a misspelt one.

Both read the schema (``schema.py``): each field's one-line ``doc`` is the only description of a setting,
so the help page, the suggestions and the code cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterator, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from .schema import EvalConfig

# The released variants: listed once, as one line, not field by field.
_TABLES = {"released": "released.<XS|S|M|L>.<field>"}
_NAME_WIDTH = 34


def _nested(hint: Any) -> Any:
    """The dataclass a field holds (also inside Optional), or None for a plain value."""
    if dataclasses.is_dataclass(hint):
        return hint
    return next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), None)


def _fields(schema: Any, prefix: str = "") -> Iterator[tuple[str, str, bool]]:
    """(dotted name, doc, is_section) for every field of ``schema``, sections before their fields."""
    hints = typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        name, doc = f"{prefix}{spec.name}", spec.metadata.get("doc", "")
        child = _nested(hints[spec.name])
        if name in _TABLES:
            yield _TABLES[name], doc, False
        elif child is not None:
            yield name, doc, True
            yield from _fields(child, f"{name}.")
        else:
            yield name, doc, False


def described_settings() -> list[tuple[str, str, bool]]:
    """(dotted name, one-line doc, is_section) of every setting in schema order: what the docs site's
    configuration page is generated from, so it says what ``--help`` says."""
    return list(_fields(EvalConfig))


def setting_names() -> list[str]:
    """Every dotted name a command line may set, sections (``data``, ``trainer.*`` parents) included."""
    return [name for name, _, _ in _fields(EvalConfig) if name not in _TABLES.values()]


def _shown(cfg: DictConfig, name: str) -> str:
    """The setting's value in ``cfg`` as a command line would write it; ``???`` when it must be given."""
    try:
        value = OmegaConf.select(cfg, name, throw_on_missing=True)
    except MissingMandatoryValue:
        return "???"
    except OmegaConfBaseException:  # an interpolation that cannot resolve outside a run (none do today)
        return "?"
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if hasattr(value, "name") and hasattr(value, "value"):  # an enum
        return str(value.value)
    return str(value).replace("'", "")


def settings_help(cfg: DictConfig | None = None) -> str:
    """The settings, grouped by section, one line each: ``name=value  description`` (values from ``cfg``)."""
    lines: list[str] = []
    general: list[str] = []
    for name, doc, section in _fields(EvalConfig):
        if section and "." not in name:
            lines += ["", f"[{name}] {doc}"]
            continue
        if section:
            continue
        entry = f"{name}={_shown(cfg, name)}" if cfg is not None and "<" not in name else name
        text = f"  {entry:<{_NAME_WIDTH}} {doc}" if len(entry) < _NAME_WIDTH else f"  {entry}  {doc}"
        (general if "." not in name else lines).append(text)
    return "\n".join(["[general]", *general, *lines])


def closest(word: str, choices: Sequence[str]) -> str | None:
    """The choice a misspelt ``word`` most likely meant (case-insensitive), or None when none is close."""
    folded = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None


def closest_setting(name: str) -> str | None:
    """The setting a misspelt dotted ``name`` most likely meant."""
    return closest(name, setting_names())


def register_help_resolvers() -> None:
    """``${convnextpose_eval.settings:}`` and ``${convnextpose_eval.cli.command:}`` for the help page's template."""
    from ..common.errors import command

    def settings(*, _root_: DictConfig) -> str:
        job = _root_.copy()
        if "hydra" in job:
            from omegaconf import open_dict

            with open_dict(job):
                del job["hydra"]
        return settings_help(job).replace("$", "$$")  # the page is then a string.Template

    OmegaConf.register_new_resolver("convnextpose_eval.settings", settings, replace=True)
    OmegaConf.register_new_resolver("convnextpose_eval.cli.command", command, replace=True)


HELP_FLAGS = ("-h", "--help")


def command_help(doc: str, overrides: Sequence[str]) -> str:
    """The ``--help`` page of a command that takes the evaluation's overrides (bench, export): what it does,
    then every setting with its value as composed from ``overrides``."""
    from hydra.errors import HydraException

    from ..common.errors import command
    from .compose import compose_config

    given = [o for o in overrides if o not in HELP_FLAGS and not o.startswith("-")]
    try:
        cfg: DictConfig | None = compose_config(given)
    except (HydraException, OmegaConfBaseException):  # a bad override: the page lists the settings without values
        cfg = None
    return (f"{doc.strip()}\n\nSettings: the overrides of `{command()}` (`{command()} --help` has the commands), "
            f"here with the values they compose to:\n\n{settings_help(cfg)}")
