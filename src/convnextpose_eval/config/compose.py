"""Compose the configuration without starting a Hydra job (bench, export, inspect, the sample generator)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

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
    """A config node or schema object as plain containers (enums as their names), for code outside the config room."""
    if not isinstance(node, DictConfig):
        node = OmegaConf.structured(node)
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


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


def composition_error(overrides: Sequence[str]) -> str | None:
    """One line saying why these command-line overrides do not compose, or None when they do.

    Hydra reports a bad override (``flip_test=maybe``, ``data.batch_size=x``, a misspelt key) in several
    lines; this composes once up front to say it in one. A sweep (``variant=XS,S``) is tried with each
    swept key's first value.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    plain = overrides_of(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(plain)
        single = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
                  for o in parsed]  # fmt: skip
        compose_config(single)
    except (HydraException, OmegaConfBaseException) as exc:
        cause = exc.__cause__ or exc
        lines = [line.strip() for line in str(cause).splitlines() if line.strip() and not line.strip().startswith(("full_key", "object_type", "reference_type", "Set the environment"))]
        key = getattr(cause, "full_key", None)
        return f"{key}: {lines[0]}" if key and lines else (lines[0] if lines else type(cause).__name__)
    return None
