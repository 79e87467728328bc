"""The released variants, read from ``conf/variant/*.yaml`` (the one place they are defined)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .errors import ConfigError
from .model.spec import ArchSpec

CONFIG_DIR_ENV = "CONVNEXTPOSE_EVAL_CONF"


def config_dir() -> Path:
    """The project's ``conf/`` folder (next to ``src/``), or the folder named by $CONVNEXTPOSE_EVAL_CONF."""
    override = os.environ.get(CONFIG_DIR_ENV)
    folder = Path(override) if override else Path(__file__).resolve().parents[2] / "conf"
    if not (folder / "variant").is_dir():
        raise ConfigError(f"{folder}: no variant/ configs here; set {CONFIG_DIR_ENV} to the project's conf/ folder")
    return folder


@lru_cache(maxsize=None)
def _load(folder: str) -> dict[str, dict[str, Any]]:
    variants = {}
    for path in sorted(Path(folder, "variant").glob("*.yaml")):
        node = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if node.get("name") not in (None, "auto") and node["backbone"]["dims"] is not None:
            variants[node["name"]] = node
    return variants


def released_variants() -> dict[str, dict[str, Any]]:
    """Variant name -> its config as a plain dict, for every fully specified variant."""
    return _load(str(config_dir()))


def released_specs() -> dict[str, ArchSpec]:
    return {name: ArchSpec.from_variant(node) for name, node in released_variants().items()}
