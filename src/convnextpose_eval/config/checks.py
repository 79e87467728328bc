"""Turn a composed configuration into a checked, typed :class:`EvalConfig`, or one line saying what is wrong.

Runs first in every entry point, before any checkpoint is downloaded or any data is read. Types are
already enforced by the schema while Hydra composes; this adds what a type cannot say: keys forced in
with ``+key=value``, ranges, choices and paths that must exist.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ..common.errors import ConfigError, command
from .fields import no_such_setting
from .schema import PRECISIONS, SAMPLE_MARKER, Backend, EvalConfig, VariantConfig

PROTOCOLS = (1, 2)
# report.html keeps every worst frame's crop: a bound on the page's size (docs/report.md).
MAX_WORST_FRAMES = 200


def quoted_value(value: str) -> str:
    """``value`` as one quoted string in Hydra's override grammar (any path: spaces, ``~``, ``,``, ``=``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_home_paths(overrides: Sequence[str]) -> list[str]:
    """Quote values that start with ``~`` (``data.root=~/h36m``), which Hydra's override grammar rejects."""
    quoted = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and value.startswith("~") and not key.startswith(("~", "hydra.")):
            value = quoted_value(value)
        quoted.append(f"{key}{sep}{value}")
    return quoted


def _without_hydra(cfg: DictConfig) -> DictConfig:
    """The task's own settings: ``hydra`` is present only when composed with ``return_hydra_config``."""
    if "hydra" not in cfg:
        return cfg
    plain = cfg.copy()
    with open_dict(plain):
        del plain["hydra"]
    return plain


def _unknown_key(node: Any, schema: Any, prefix: str = "") -> str | None:
    """The dotted name of a key the schema does not have (forced in with ``+key=value``), if any.

    ``schema`` is a dataclass, or a one-element tuple ``(dataclass,)`` for a ``Dict[str, dataclass]``.
    """
    if not isinstance(node, DictConfig) or schema is None:
        return None
    if isinstance(schema, tuple):
        children = {key: schema[0] for key in node.keys()}
    else:
        hints = typing.get_type_hints(schema)
        unknown = [key for key in node.keys() if key not in hints]
        if unknown:
            return f"{prefix}{unknown[0]}"
        children = {key: _field_schema(hints[key]) for key in node.keys()}
    for key, child in children.items():
        found = _unknown_key(node._get_node(key), child, f"{prefix}{key}.")
        if found:
            return found
    return None


def _field_schema(hint: Any) -> Any:
    """What a field holds: a dataclass (also inside Optional), ``(dataclass,)`` for Dict[str, dataclass], or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is dict:
        return (args[-1],) if dataclasses.is_dataclass(args[-1]) else None
    return next((a for a in args if dataclasses.is_dataclass(a)), None)


def _expand(path: Path | None) -> Path | None:
    return None if path is None else Path(path).expanduser().absolute()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_variant(variant: VariantConfig, where: str) -> None:
    for name, value in (("depth_dim", variant.depth_dim), ("joint_num", variant.joint_num), ("input_size", variant.input_size),
                        ("head.channels", variant.head.channels), ("backbone.block_kernel", variant.backbone.block_kernel)):  # fmt: skip
        _require(value is None or value > 0, f"{where}.{name}={value}: must be a positive whole number")
    for name, values in (("backbone.depths", variant.backbone.depths), ("backbone.dims", variant.backbone.dims),
                         ("head.kernels", variant.head.kernels)):  # fmt: skip
        _require(values is None or (len(values) > 0 and all(v > 0 for v in values)),
                 f"{where}.{name}={values}: must be a non-empty list of positive whole numbers")  # fmt: skip


def checked_config(cfg: DictConfig) -> EvalConfig:
    """The typed configuration, with every path expanded (``~``) and made absolute; ConfigError otherwise."""
    cfg = _without_hydra(cfg)
    unknown = _unknown_key(cfg, EvalConfig)
    if unknown:
        raise ConfigError(no_such_setting(unknown))
    try:
        settings: EvalConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except MissingMandatoryValue as exc:
        if exc.full_key == "data.root":
            raise ConfigError("data.root is not set: pass data.root=DIR (the folder with annotations/ and images/), "
                              f"or try the demo on the bundled synthetic sample: `{command()} -m experiment=demo`") from None
        raise ConfigError(f"{exc.full_key}: must be set") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{getattr(exc, 'full_key', '') or 'configuration'}: {str(exc).splitlines()[0]}") from None

    data, trainer = settings.data, settings.trainer
    for holder, name in ((settings.paths, f.name) for f in dataclasses.fields(settings.paths)):
        setattr(holder, name, _expand(getattr(holder, name)))
    for name in ("root", "checkpoint_dir", "crop_cache_dir", "index_cache_dir"):
        setattr(data, name, _expand(getattr(data, name)))
    settings.ckpt_path = _expand(settings.ckpt_path)
    settings.onnx_path = _expand(settings.onnx_path)
    settings.export.path = _expand(settings.export.path)

    _require(data.protocol in PROTOCOLS, f"data.protocol={data.protocol}: must be 1 (S11, PA-MPJPE) or 2 (S9 and S11, MPJPE)")
    _require(data.batch_size >= 1, f"data.batch_size={data.batch_size}: must be at least 1")
    _require(data.num_workers >= 0, f"data.num_workers={data.num_workers}: must be 0 or more")
    _require(trainer.devices >= 1, f"trainer.devices={trainer.devices}: must be at least 1")
    _require(trainer.num_nodes >= 1, f"trainer.num_nodes={trainer.num_nodes}: must be at least 1")
    _require(trainer.timeout_s >= 1, f"trainer.timeout_s={trainer.timeout_s}: must be at least 1 second")
    _require(trainer.precision in PRECISIONS, f"trainer.precision={trainer.precision}: must be one of {', '.join(PRECISIONS)}")
    _require(settings.bench.images is None or settings.bench.images >= 1, f"bench.images={settings.bench.images}: must be null or at least 1")
    _require(settings.bench.repeats >= 1, f"bench.repeats={settings.bench.repeats}: must be at least 1")
    deploy = settings.deploy
    deploy.files = [_expand(Path(path)) for path in deploy.files]
    _require(deploy.images is None or deploy.images >= 2, f"deploy.images={deploy.images}: must be null or at least 2 (the paired bootstrap)")
    for name in ("calibration_images", "runs", "throughput_batches", "bootstrap_resamples"):
        _require(getattr(deploy, name) >= 1, f"deploy.{name}={getattr(deploy, name)}: must be at least 1")
    _require(deploy.warmup >= 0, f"deploy.warmup={deploy.warmup}: must be 0 or more")
    _require(deploy.threads is None or deploy.threads >= 1, f"deploy.threads={deploy.threads}: must be null or at least 1")
    _require(settings.export.opset >= 7, f"export.opset={settings.export.opset}: ONNX opsets start at 7")
    share, least = settings.onnx_check.share, settings.onnx_check.min_batches
    _require(0 < share <= 1, f"onnx_check.share={share}: must be above 0 and at most 1 (the share of scored batches cross-checked)")
    _require(least >= 1, f"onnx_check.min_batches={least}: must be at least 1")
    _check_bands(settings.report.tolerance_bands)
    _require(0 <= settings.report.worst_frames <= MAX_WORST_FRAMES,
             f"report.worst_frames={settings.report.worst_frames}: must be 0 to {MAX_WORST_FRAMES} (each adds up to 50 kB to report.html)")  # fmt: skip
    _check_variant(settings.variant, "variant")
    for name, variant in settings.released.items():
        _check_variant(variant, f"released.{name}")
    if data.skip_corrupt_s9:
        _require(bool(data.corrupt_s9_sequences), "data.skip_corrupt_s9=true but data.corrupt_s9_sequences is empty")
    _require(data.root.is_dir() or data.synthetic,
             f"{data.root}: data root does not exist (data.root must hold annotations/ and images/)")  # fmt: skip
    if data.synthetic:  # generated on first use, but only where the sample belongs: never at an arbitrary data.root
        _require(data.root == settings.paths.sample_dir or (data.root / SAMPLE_MARKER).is_file(),
                 f"data.root={data.root}: not a generated synthetic sample (no {SAMPLE_MARKER}); data=sample and "
                 f"experiment=demo generate theirs only at paths.sample_dir ({settings.paths.sample_dir}): drop data.root, "
                 "or set paths.sample_dir=DIR to generate one in DIR")  # fmt: skip
    if settings.ckpt_path is not None:
        _require(settings.ckpt_path.exists(), f"{settings.ckpt_path}: no such file or directory (ckpt_path)")

    if settings.backend is Backend.onnxruntime or (settings.backend is Backend.auto and settings.onnx_path is not None):
        if settings.onnx_path is not None:
            _require(settings.onnx_path.exists(), f"{settings.onnx_path}: no such file or directory (onnx_path)")
        _require(not settings.oracle, "oracle=true takes no network: run it with backend=pytorch")
        _require(trainer.precision.startswith("32") and not trainer.tf32,
                 f"backend=onnxruntime runs the exported float32 graph: trainer.precision={trainer.precision} and "
                 f"trainer.tf32={str(trainer.tf32).lower()} do not apply to it (use 32-true, tf32=false)")  # fmt: skip
    return settings


def _check_bands(bands: list[Any]) -> None:
    for band in bands:
        ok = isinstance(band, (list, tuple)) and len(band) == 2 and isinstance(band[0], (int, float)) and isinstance(band[1], str)
        _require(ok, f"report.tolerance_bands: {band!r} is not a [millimetres, name] pair")


def check_single_run(settings: EvalConfig) -> None:
    """What one run needs beyond valid settings, checked before Hydra makes its folder: ``variant=auto``
    needs a checkpoint to read the architecture from (on the sample, the demo is the sweep over all four)."""
    if settings.variant.name == "auto" and settings.ckpt_path is None and settings.onnx_path is None and not settings.oracle:
        demo = f"; the demo runs all four on the sample: `{command()} -m experiment=demo`" if settings.data.synthetic else ""
        raise ConfigError(f"variant=auto reads the architecture from a checkpoint: give ckpt_path=FILE_OR_DIR, "
                          f"or choose variant=XS|S|M|L for the released file{demo}")  # fmt: skip
