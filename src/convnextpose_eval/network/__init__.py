"""The ConvNeXtPose network, its architecture spec and soft-argmax."""

from .convnext import ConvNeXtPose, count_macs, count_parameters
from .soft_argmax import moment_table, soft_argmax_3d, soft_argmax_3d_moments
from .spec import ArchSpec, upsample_for_depth_dim

__all__ = ["ArchSpec", "ConvNeXtPose", "count_macs", "count_parameters", "moment_table", "soft_argmax_3d", "soft_argmax_3d_moments", "upsample_for_depth_dim"]
