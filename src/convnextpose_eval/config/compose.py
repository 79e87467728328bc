"""Compose the configuration without starting a Hydra job (bench, export, inspect, the sample generator)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .checks import check_single_run, checked_config
from .fields import no_such_option, no_such_setting
from .schema import register_schema

CONFIG_MODULE = "convnextpose_eval.conf"
CONFIG_NAME = "eval"


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The same composition ``run_eval.py`` does, from the configs shipped inside the package."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name=CONFIG_NAME, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def as_plain(node: Any) -> Any:
    """A config node or checked schema object as plain containers (enums as their names), for code outside the
    config room.

    A checked schema object (:func:`~.checks.checked_config`) holds resolved, typed values, so it is walked
    here field by field; converting it through ``OmegaConf.structured`` instead cost 40 ms per variant and
    90 ms for the whole config, several times a run."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    if not (is_dataclass(node) and not isinstance(node, type)):
        raise TypeError(f"as_plain takes a config node or a checked schema object, not {type(node).__name__}")
    return _plain(node)


def _plain(value: Any) -> Any:
    """One value of a checked schema object, as :func:`as_plain` gives it."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    if is_dataclass(value) and not isinstance(value, type):
        return {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def variant_table(cfg: Any) -> dict[str, dict[str, Any]]:
    """The released variants of a composed or checked config (its ``released`` table), as plain dicts."""
    return {str(name): as_plain(node) for name, node in cfg.released.items()}


@lru_cache(maxsize=1)
def released_variants() -> dict[str, dict[str, Any]]:
    """The released variants from the shipped configs, for code that runs without a composed config."""
    return variant_table(compose_config())


# Hydra's own flags that take a value as the next argument (``--cfg job``); ``--info``'s value is optional.
_FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                     "--experimental-rerun")  # fmt: skip
_INFO_TOPICS = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def overrides_of(arguments: Sequence[str]) -> list[str]:
    """The overrides in a command line, without Hydra's flags and their values (``--cfg job``, ``--info config``)."""
    overrides, skip_next = [], False
    for index, argument in enumerate(arguments):
        if skip_next:
            skip_next = False
        elif argument in _FLAGS_WITH_VALUE:
            skip_next = True
        elif argument in ("--info", "-i"):
            skip_next = index + 1 < len(arguments) and arguments[index + 1] in _INFO_TOPICS
        elif not argument.startswith("-"):
            overrides.append(argument)
    return overrides


def sweep_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that give several values (``variant=XS,S``): a sweep, for ``-m``; [] when none or unparsable."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides_of(overrides))
    except HydraException:
        return []
    return [o.input_line for o in parsed if o.is_sweep_override()]


def composition_error(overrides: Sequence[str], check_values: bool = False) -> str | None:
    """One line saying why these command-line overrides do not compose or, with ``check_values`` and for a
    single run, do not pass the value checks (:func:`checked_config`: before Hydra makes a run folder or
    anything heavy is imported; a sweep's jobs check their own); None when they do.

    Hydra reports a bad override (``flip_test=maybe``, ``data.batch_size=x``, a misspelt key) in several
    lines; this composes once up front to say it in one, with the closest setting or option for a typo.
    A sweep (``-m``, ``variant=XS,S``) is composed with each swept value; its jobs check their values themselves.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        OmegaConfBaseException,
    )

    plain = overrides_of(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(plain)
        swept = [o for o in parsed if o.is_sweep_override()]
        first = {o.input_line: f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" for o in swept}
        cfg = compose_config([first.get(o.input_line, o.input_line) for o in parsed])
        if check_values and not swept and not {"-m", "--multirun"} & set(overrides):
            from ..common.errors import ConfigError

            try:
                check_single_run(checked_config(cfg))
            except ConfigError as exc:
                return str(exc)
        for sweep in swept:  # each further value of a swept key, the others at their first
            for value in list(sweep.sweep_string_iterator())[1:]:
                compose_config([f"{o.get_key_element()}={value}" if o is sweep else first.get(o.input_line, o.input_line) for o in parsed])
    except (HydraException, OmegaConfBaseException) as exc:
        cause = exc.__cause__ or exc
        if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options is not None:
            group, _, option = exc.missing_cfg_file.rpartition("/")
            return no_such_option(group, option, exc.options)
        key = getattr(cause, "full_key", None)
        if key and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            return no_such_setting(key)
        lines = [line.strip() for line in str(cause).splitlines() if line.strip() and not line.strip().startswith(("full_key", "object_type", "reference_type", "Set the environment"))]
        return f"{key}: {lines[0]}" if key and lines else (lines[0] if lines else type(cause).__name__)
    return None
