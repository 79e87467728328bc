"""What ``--help`` says about every setting (the closest setting to a typo is ``fields.py``'s).

Both read the schema (``schema.py``): each field's one-line ``doc`` is the only description of a setting,
so the help page, the suggestions and the code cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ..common.errors import command
from .compose import compose_config
from .fields import schema_fields
from .schema import EvalConfig

_NAME_WIDTH = 34


def described_settings() -> list[tuple[str, str, bool]]:
    """(dotted name, one-line doc, is_section) of every setting in schema order: what the docs site's
    configuration page is generated from, so it says what ``--help`` says."""
    return list(schema_fields(EvalConfig))


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
    for name, doc, section in schema_fields(EvalConfig):
        if section and "." not in name:
            lines += ["", f"[{name}] {doc}"]
            continue
        if section:
            continue
        entry = f"{name}={_shown(cfg, name)}" if cfg is not None and "<" not in name else name
        text = f"  {entry:<{_NAME_WIDTH}} {doc}" if len(entry) < _NAME_WIDTH else f"  {entry}  {doc}"
        (general if "." not in name else lines).append(text)
    return "\n".join(["[general]", *general, *lines])


def register_help_resolvers() -> None:
    """``${convnextpose_eval.settings:}`` and ``${convnextpose_eval.command:}`` for the help page's template."""
    def settings(*, _root_: DictConfig) -> str:
        job = _root_.copy()
        if "hydra" in job:
            from omegaconf import open_dict

            with open_dict(job):
                del job["hydra"]
        return settings_help(job).replace("$", "$$")  # the page is then a string.Template

    OmegaConf.register_new_resolver("convnextpose_eval.settings", settings, replace=True)
    OmegaConf.register_new_resolver("convnextpose_eval.command", command, replace=True)


HELP_FLAGS = ("-h", "--help")


def command_help(doc: str, overrides: Sequence[str]) -> str:
    """The ``--help`` page of a command that takes the evaluation's overrides (bench, export): what it does,
    then every setting with its value as composed from ``overrides``."""
    from hydra.errors import HydraException


    given = [o for o in overrides if o not in HELP_FLAGS and not o.startswith("-")]
    try:
        cfg: DictConfig | None = compose_config(given)
    except (HydraException, OmegaConfBaseException):  # a bad override: the page lists the settings without values
        cfg = None
    return (f"{doc.strip()}\n\nSettings: the overrides of `{command()}` (`{command()} --help` has the commands), "
            f"here with the values they compose to:\n\n{settings_help(cfg)}")
