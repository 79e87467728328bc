"""The released variants, read from ``conf/variant/*.yaml`` (the one place they are defined)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..errors import ConfigError
from ..network.spec import ArchSpec


def config_dir() -> Path:
    """The project's ``conf/`` folder, next to ``src/`` in the checkout the package is installed from.

    $CONVNEXTPOSE_EVAL_ROOT moves the outputs (paths.root_dir), not the configs: tests point it at
    temporary folders while reading the checkout's conf/.
    """
    folder = Path(__file__).resolve().parents[3] / "conf"
    if not (folder / "variant").is_dir():
        raise ConfigError(f"{folder}: no variant/ configs here; install the project with pip install -e . from its checkout")
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
    """Variant name -> the architecture it builds."""
    return {name: ArchSpec.from_variant(node) for name, node in released_variants().items()}
