"""The ConvNeXtPose network, its architecture spec and soft-argmax."""

from .convnext import ConvNeXtPose, count_macs, count_parameters
from .soft_argmax import soft_argmax_3d
from .spec import ArchSpec, upsample_for_depth_dim

__all__ = ["ArchSpec", "ConvNeXtPose", "count_macs", "count_parameters", "soft_argmax_3d", "upsample_for_depth_dim"]
