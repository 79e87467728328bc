"""The one forward interface the evaluator sees: crops in, heatmap coordinates out, and what ran them.

An engine is built from a :class:`ForwardSource` (where the weights are and how to run them), turns
(B, 3, S, S) RGB crops (uint8 or float, 0..255) into (B, J, 3) heatmap coordinates, and describes itself
for results.json. Normalization is shared here so that every engine sees the same input values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..network import ArchSpec, ConvNeXtPose, count_macs, count_parameters
from .scored_check import DEFAULT_MIN_BATCHES, DEFAULT_SHARE, fresh_seed

# The weights were trained on 0..255 RGB values normalized with ImageNet's 0..1 statistics.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)

# ``check_crops(arch)``: a few real test crops (uint8 or 0..255 float, (N, 3, S, S)) for engines that check
# a file against its checkpoint by running both; called only after every check that needs no data.
CheckCrops = Callable[[ArchSpec], torch.Tensor]

# What the evaluator needs of the scored-batch check (it sees this module only): the defaults and a fresh seed.
__all__ = ["DEFAULT_MIN_BATCHES", "DEFAULT_SHARE", "CheckCrops", "Forward", "ForwardSource", "arch_model_info", "fresh_seed"]


@dataclass(frozen=True)
class ForwardSource:
    """Where the weights come from and how to run them; each engine reads the fields it needs."""

    variant: Mapping[str, Any]
    known: Mapping[str, ArchSpec] = field(default_factory=dict)
    ckpt_path: str | None = None
    onnx_path: str | None = None
    cache_dir: str | None = None
    channels_last: bool = True
    fold_batchnorm: bool = True
    provider: str = "cpu"
    opset: int = 17
    check_crops: CheckCrops | None = None
    # The share of scored batches an exported file also runs through the checkpoint's network, and the least.
    check_share: float = DEFAULT_SHARE
    check_min_batches: int = DEFAULT_MIN_BATCHES


class Forward(torch.nn.Module, ABC):
    """crops -> heatmap coordinates. A Module, so the evaluator moves it (and any network it holds) to its device."""

    engine: str = ""

    def __init__(self, arch: ArchSpec) -> None:
        super().__init__()
        self.arch = arch
        # The checkpoint whose weights this forward pass computes (results.json's ``checkpoint``), when known.
        self.checkpoint_info: dict[str, Any] | None = None
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, crops: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """0..255 RGB crops -> the network's float32 input, NCHW, written into ``out`` when given.

        ``(crops - mean) / std`` computed in place in one float32 tensor: the same values, bit for bit,
        as the out-of-place expression, without its two extra 4-bytes-a-pixel temporaries.
        """
        if out is None:
            out = torch.empty(crops.shape, dtype=torch.float32, device=crops.device)
        elif out.shape != crops.shape or out.dtype != torch.float32 or out.device != crops.device:
            raise ValueError(f"normalize: out is {out.dtype} {tuple(out.shape)} on {out.device}, crops {tuple(crops.shape)} on {crops.device}")
        out.copy_(crops)
        out.sub_(self.pixel_mean.to(crops.device))
        return out.div_(self.pixel_std.to(crops.device))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) crops -> (B, J, 3) float heatmap coordinates."""
        return self.run(self.normalize(crops)).float()

    @abstractmethod
    def run(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized (B, 3, S, S) float32 images -> (B, J, 3) coordinates."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """results.json's ``inference`` fields this engine decides: at least ``backend``; ``onnx`` for a file."""

    def begin_scoring(self, num_batches: int, seed: int, rank: int = 0) -> None:
        """Called as a run starts scoring ``num_batches`` batches (on this rank), with the run's fresh ``seed``:
        an engine that proves itself on the scored batches draws them here. The checkpoint's own network has
        nothing to prove."""

    @property
    def cross_checks(self) -> bool:
        """Whether :meth:`begin_scoring` draws batches to compare with the checkpoint's network."""
        return False

    def model_info(self) -> dict[str, Any]:
        """Architecture, parameter count and GFLOPs (multiply-accumulates) of the network that runs.

        Counted on the meta device: shapes only, no weights and no arithmetic, so it costs milliseconds.
        """
        return arch_model_info(self.arch)


def arch_model_info(arch: ArchSpec) -> dict[str, Any]:
    """The model block of results.json for a network of architecture ``arch``."""
    with torch.device("meta"):
        network = ConvNeXtPose(arch)
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in arch.to_dict().items()}
    return {"arch": plain, "heatmap_size": arch.heatmap_size, "params": count_parameters(network),
            "gflops": round(count_macs(network) / 1e9, 4)}  # fmt: skip
