"""The architecture of one ConvNeXtPose network, as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

BACKBONE_STRIDE = 32


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to build the network; compared field by field against a checkpoint."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    head_channels: int
    head_upsample: tuple[bool, ...]
    depth_dim: int
    joint_num: int
    head_kernels: tuple[int, ...] = (3, 3, 3)
    block_kernel: int = 7
    input_size: int = 256

    @property
    def heatmap_size(self) -> int:
        """Side of the output heatmap: the backbone's stride-32 map doubled once per upsampling layer."""
        return self.input_size // BACKBONE_STRIDE * 2 ** sum(self.head_upsample)

    def describe(self) -> str:
        """Short human-readable form used in error messages."""
        return (
            f"dims {self.dims[0]}-{self.dims[-1]}, depths {','.join(map(str, self.depths))}, "
            f"head {self.head_channels}, depth_dim {self.depth_dim}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_variant(cls, variant: Mapping[str, Any]) -> "ArchSpec":
        """Build from a composed ``variant`` config node (every field must be set)."""
        backbone, head = variant["backbone"], variant["head"]
        return cls(
            depths=tuple(int(d) for d in backbone["depths"]),
            dims=tuple(int(d) for d in backbone["dims"]),
            head_channels=int(head["channels"]),
            head_upsample=tuple(bool(u) for u in head["upsample"]),
            depth_dim=int(variant["depth_dim"]),
            joint_num=int(variant["joint_num"]),
            head_kernels=tuple(int(k) for k in head["kernels"]),
            block_kernel=int(backbone["block_kernel"]),
            input_size=int(variant["input_size"]),
        )


def upsample_for_depth_dim(depth_dim: int, input_size: int = 256, layers: int = 3) -> tuple[bool, ...]:
    """Upsampling flags that make the heatmap side equal depth_dim (how the released variants tie them).

    Upsampling layers have no weights, so a checkpoint alone cannot tell them;
    every released variant has a cubic heatmap volume (32^3 or 64^3).
    """
    base = input_size // BACKBONE_STRIDE
    ups = 0
    while base * 2**ups < depth_dim:
        ups += 1
    if base * 2**ups != depth_dim or ups > layers:
        raise ValueError(f"no upsampling of {layers} layers turns a {base}x{base} map into {depth_dim}x{depth_dim}")
    return tuple(i < ups for i in range(layers))


def specs_of(variants: Mapping[str, Mapping[str, Any]]) -> dict[str, ArchSpec]:
    """Variant name -> the architecture it builds, for a table of fully specified variant configs."""
    return {name: ArchSpec.from_variant(node) for name, node in variants.items()}
