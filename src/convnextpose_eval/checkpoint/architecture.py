"""Read a network's architecture off checkpoint tensor shapes, check it against the config, load strictly."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch

from ..common.errors import CheckpointError
from ..common.human36m import JOINT_NUM
from ..network.convnext import ConvNeXtPose
from ..network.spec import ArchSpec, upsample_for_depth_dim
from .reader import LoadedCheckpoint, dtype_name

_STAGE_BLOCK = re.compile(r"^backbone\.stages\.(\d+)\.(\d+)\.")


def _conv_shape(path: Path, state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    """The shape of a convolution weight the architecture is read from: 4 positive sizes, or a one-line error."""
    if key not in state:
        raise CheckpointError(f"{path}: has no '{key}', so it is not a ConvNeXtPose network")
    shape = tuple(state[key].shape)
    if len(shape) != 4 or min(shape) < 1:
        raise CheckpointError(f"{path}: '{key}' has shape {list(shape)}, not the 4 positive sizes of a convolution weight")
    return shape


def _misfit(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading into a network with the ``expected`` tensors, or None."""
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected keys (first: {', '.join(extra[:3])})")
        return "; ".join(parts)
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            return f"size mismatch for {key}: checkpoint {list(state[key].shape)} vs network {list(tensor.shape)}"
    return None


def _check_fits(path: Path, spec: ArchSpec, state: Mapping[str, torch.Tensor]) -> None:
    """The network the shapes imply must hold exactly the checkpoint's tensors.

    Built on the meta device, which allocates nothing: a few crafted shapes (a
    stem 8192 channels wide) imply a network of gigabytes, and it must be refused
    before anyone builds it for real.
    """
    with torch.device("meta"):
        network = ConvNeXtPose(spec)
    problem = _misfit(network.state_dict(), state)
    if problem:
        raise CheckpointError(f"{path}: does not fit the network its shapes describe: {problem}")


def infer_arch(
    ckpt: LoadedCheckpoint,
    known: Mapping[str, ArchSpec] | None = None,
    joint_num: int | None = None,
    input_size: int = 256,
) -> ArchSpec:
    """Read the architecture off the tensor shapes.

    The final layer has joint_num * depth_dim channels; the joint count is the
    evaluator's 18 unless given. Upsampling has no weights: it is taken from the
    released variant of the same shape, else chosen so the heatmap side equals depth_dim.
    """
    path, state = ckpt.path, ckpt.state_dict
    dims = [_conv_shape(path, state, "backbone.downsample_layers.0.0.weight")[0]]
    index = 1
    while f"backbone.downsample_layers.{index}.1.weight" in state:
        dims.append(_conv_shape(path, state, f"backbone.downsample_layers.{index}.1.weight")[0])
        index += 1
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = _STAGE_BLOCK.match(key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    depths = tuple(len(blocks.get(stage, ())) for stage in range(len(dims)))
    block_kernel = _conv_shape(path, state, "backbone.stages.0.0.dwconv.weight")[-1]
    head_kernels = []
    layer = 1
    while f"head.deconv_layers_{layer}.dwconv.weight" in state:
        head_kernels.append(_conv_shape(path, state, f"head.deconv_layers_{layer}.dwconv.weight")[-1])
        layer += 1
    head_channels = _conv_shape(path, state, "head.deconv_layers_1.pwconv.weight")[0]
    out_channels = _conv_shape(path, state, "head.final_layer.weight")[0]
    joints = joint_num or JOINT_NUM
    if out_channels % joints:
        raise CheckpointError(
            f"{path}: final layer has {out_channels} channels, not a multiple of {joints} joints"
        )
    spec = ArchSpec(
        depths=depths,
        dims=tuple(dims),
        head_channels=head_channels,
        head_upsample=(),
        depth_dim=out_channels // joints,
        joint_num=joints,
        head_kernels=tuple(head_kernels),
        block_kernel=block_kernel,
        input_size=input_size,
    )
    name = match_variant(spec, known or {})
    if name is not None:
        spec = replace(spec, head_upsample=known[name].head_upsample)
    else:
        try:
            spec = replace(spec, head_upsample=upsample_for_depth_dim(spec.depth_dim, input_size, len(head_kernels)))
        except ValueError as exc:
            raise CheckpointError(f"{path}: depth_dim {spec.depth_dim}: {exc}; set variant.head.upsample") from None
    _check_fits(path, spec, state)
    return spec


_SHAPE_FIELDS = ("depths", "dims", "head_channels", "depth_dim", "joint_num", "head_kernels", "block_kernel")


def match_variant(spec: ArchSpec, known: Mapping[str, ArchSpec]) -> str | None:
    """The released variant whose weights have this shape, if any (upsampling is not part of the shape)."""
    for name, candidate in known.items():
        if all(getattr(candidate, f) == getattr(spec, f) for f in _SHAPE_FIELDS):
            return name
    return None


def _format_field(field: str, value: Any) -> str:
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    return f"{field.replace('_', ' ')} {value}"


def check_arch(
    found: ArchSpec,
    requested: Mapping[str, Any],
    variant_name: str,
    path: Path,
    known: Mapping[str, ArchSpec],
) -> None:
    """Fail with one line if the checkpoint's shapes differ from any field the config fixes."""
    differing = [f for f in _SHAPE_FIELDS if requested.get(f) is not None and as_tuple(requested[f]) != getattr(found, f)]
    if not differing:
        return
    fit = match_variant(found, known)
    article = "an" if fit and fit[0] in "ASLMX" else "a"
    shape = f"{article} {fit}-shaped network" if fit else "a network of no released variant"
    asked = ", ".join(_format_field(f, as_tuple(requested[f])) for f in differing)
    if fit and fit == variant_name:
        advice = "drop the variant.* overrides, or run with variant=auto"
    elif fit:
        advice = f"run with variant={fit} or variant=auto"
    else:
        advice = "run with variant=auto"
    raise CheckpointError(f"{path.name} holds {shape} ({found.describe()}) but variant={variant_name} asks for {asked}; {advice}")


def as_tuple(value: Any) -> Any:
    """Lists from configs compare equal to the tuples in an ArchSpec."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def requested_fields(variant: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture fields a composed ``variant`` config fixes (``auto`` leaves them null)."""
    backbone, head = variant.get("backbone") or {}, variant.get("head") or {}
    return {
        "depths": backbone.get("depths"),
        "dims": backbone.get("dims"),
        "block_kernel": backbone.get("block_kernel"),
        "head_channels": head.get("channels"),
        "head_kernels": head.get("kernels"),
        "depth_dim": variant.get("depth_dim"),
        "joint_num": variant.get("joint_num"),
    }


def resolve_arch(
    ckpt: LoadedCheckpoint, variant: Mapping[str, Any], known: Mapping[str, ArchSpec]
) -> ArchSpec:
    """The architecture to build: the checkpoint's shapes, checked against what the config fixes.

    Upsampling flags, which no weights record, come from the config when it sets them.
    """
    requested = requested_fields(variant)
    found = infer_arch(ckpt, known, joint_num=requested["joint_num"], input_size=int(variant.get("input_size") or 256))
    check_arch(found, requested, str(variant.get("name")), ckpt.path, known)
    upsample = (variant.get("head") or {}).get("upsample")
    return replace(found, head_upsample=tuple(bool(u) for u in upsample)) if upsample is not None else found


def _dtype_fits(given: torch.dtype, wanted: torch.dtype) -> bool:
    """Floating tensors must match exactly; integer buffers (BatchNorm's step counter) take any integer type."""
    if wanted.is_floating_point:
        return given == wanted
    return not (given.is_floating_point or given.is_complex or given == torch.bool)


def load_weights(model: torch.nn.Module, ckpt: LoadedCheckpoint) -> None:
    """Strict load: every key present, none extra, every shape and dtype equal, every value finite.

    ``load_state_dict`` would cast a tensor of another dtype into the network's without a word.
    """
    expected = model.state_dict()
    problem = _misfit(expected, ckpt.state_dict)
    if problem:
        raise CheckpointError(f"{ckpt.path}: does not fit the network: {problem}")
    for key, tensor in expected.items():
        given = ckpt.state_dict[key].dtype
        if not _dtype_fits(given, tensor.dtype):
            raise CheckpointError(f"{ckpt.path}: '{key}' is {dtype_name(given)}; the network holds {dtype_name(tensor.dtype)}")
    bad = [k for k, v in ckpt.state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{ckpt.path}: non-finite (NaN/Inf) weights in {len(bad)} tensors (first: {', '.join(bad[:3])})")
    model.load_state_dict(ckpt.state_dict, strict=True)
