"""The PyTorch engine: the checkpoint read and checked, its network built, folded and laid out as configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint.architecture import load_weights, match_variant, resolve_arch
from ..checkpoint.reader import read_checkpoint
from ..network import ConvNeXtPose
from ..network.fuse import fold_batchnorm
from .base import Forward, ForwardSource


class PyTorchForward(Forward):
    """The checkpoint's own network. BatchNorm folding and channels_last change float rounding only."""

    engine = "pytorch"

    def __init__(self, network: ConvNeXtPose, channels_last: bool, checkpoint_info: dict[str, Any]) -> None:
        super().__init__(network.spec)
        self.network = network
        self.channels_last = channels_last
        self.checkpoint_info = checkpoint_info

    @classmethod
    def build(cls, source: ForwardSource) -> "PyTorchForward":
        """Read the checkpoint, read the architecture off its shapes and check it against the variant, load strictly."""
        assert source.ckpt_path is not None
        ckpt = read_checkpoint(source.ckpt_path)
        arch = resolve_arch(ckpt, source.variant, source.known)
        network = ConvNeXtPose(arch)
        load_weights(network, ckpt)
        network.eval()
        if source.fold_batchnorm:
            fold_batchnorm(network)
        if source.channels_last:
            network = network.to(memory_format=torch.channels_last)
        info = {
            "path": str(Path(source.ckpt_path).resolve()),
            "sha256": ckpt.sha256,
            "epoch": ckpt.epoch,
            "detected_variant": match_variant(arch, source.known),
            "key_style": ckpt.key_style,
            "dtype_note": ckpt.dtype_note,
        }
        return cls(network, source.channels_last, info)

    def run(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.network(images)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.engine}
