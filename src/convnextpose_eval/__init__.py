"""Evaluation framework for ConvNeXtPose checkpoints on Human3.6M."""

__version__ = "0.1.0"
