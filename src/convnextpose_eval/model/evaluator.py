"""The LightningModule: builds the forward pass in ``setup``, runs flip-test inference, back-projects.

The forward pass comes from ``backends/`` (the checkpoint's PyTorch network, or an exported file run by
ONNX Runtime); this module sees only its interface, so the flip test, back-projection and everything
after are the same code for every engine. It scores nothing itself: each ``test_step`` returns
root-relative predictions and ground truth in mm, and the results callback (``results/writer.py``) turns
them into metrics and files.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import pytorch_lightning as pl
import torch

from ..backends import Forward, ForwardSource, build_forward
from ..backends.base import arch_model_info, fresh_seed
from ..checkpoint.architecture import match_variant
from ..common.errors import EvalError
from ..common.geometry import camera_to_heatmap, heatmap_to_camera
from ..common.human36m import (
    DEPTH_RANGE_MM,
    EVAL_JOINTS,
    ROOT_INDEX,
    flip_permutation,
)
from ..network import ArchSpec


class PoseEvaluator(pl.LightningModule):
    """Builds the forward pass from the variant config and its source; predicts camera-space poses."""

    def __init__(self, source: ForwardSource, engine: str, flip_test: bool = True, oracle: bool = False, tf32: bool = False) -> None:
        """``source``: where the weights are and how to run them; ``engine``: a name of ``backends.ENGINES``,
        decided by the run's plan. ``oracle`` without a checkpoint runs no network (ground truth round-trips)."""
        super().__init__()
        self.variant = dict(source.variant)
        self.ckpt_path = source.ckpt_path
        self.flip_test = flip_test
        self.oracle = oracle
        self.tf32 = tf32
        self.engine = engine
        self.known = dict(source.known)
        self.source = source
        self.forward_pass: Forward | None = None
        self.arch: ArchSpec | None = None
        self.detected_variant: str | None = None
        self.register_buffer("flip_order", torch.tensor(flip_permutation()), persistent=False)

    # ------------------------------------------------------------------ building

    def configure_network(self) -> None:
        """Build and check the forward pass (checkpoint, file, provenance). Safe to call more than once."""
        if self.forward_pass is not None or self.arch is not None:
            return
        if self.oracle and not self.ckpt_path:
            self.arch = self._oracle_arch(self.known)
            return
        self.forward_pass = build_forward(self.engine, self.source)
        # The check crops come from a closure over this process's data: spawned ranks neither need nor can pickle it.
        self.source = dataclasses.replace(self.source, check_crops=None)
        self.arch = self.forward_pass.arch
        self.detected_variant = match_variant(self.arch, self.known)

    def _oracle_arch(self, known: Mapping[str, ArchSpec]) -> ArchSpec:
        """The oracle needs only a heatmap geometry to round-trip through (any gives the same errors):
        the variant's, or the first released one's when the variant is auto."""
        if self.variant.get("depth_dim") is not None and (self.variant.get("head") or {}).get("upsample") is not None:
            return ArchSpec.from_variant(self.variant)
        return next(iter(known.values()))

    def setup(self, stage: str) -> None:
        # Set in every rank (spawned ranks start with PyTorch's defaults, where cuDNN may use TF32).
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32
        self.configure_network()

    @property
    def checkpoint_info(self) -> dict[str, Any]:
        """The checkpoint whose network ran (or that an exported file was proven against); empty when none."""
        return dict(self.forward_pass.checkpoint_info or {}) if self.forward_pass is not None else {}

    @property
    def onnx_info(self) -> dict[str, Any] | None:
        """The exported file that ran, as results.json records it; None for the PyTorch engine."""
        return self.describe_engine().get("onnx")

    def describe_engine(self) -> dict[str, Any]:
        """results.json's ``inference`` fields the engine decides (``backend``, and ``onnx`` for a file)."""
        return self.forward_pass.describe() if self.forward_pass is not None else {"backend": self.engine}

    def on_test_epoch_start(self) -> None:
        """An engine that proves itself on the scored batches draws them now, from one fresh seed for the run
        (rank 0's, sent to every rank) and the number of batches this rank will score."""
        if self.forward_pass is None or not self.forward_pass.cross_checks:
            return
        seed = int(self.trainer.strategy.broadcast(fresh_seed(), src=0))
        self.forward_pass.begin_scoring(int(self.trainer.num_test_batches[0]), seed, self.global_rank)

    def scored_backend_info(self) -> dict[str, Any] | None:
        """``describe_engine()["onnx"]`` after scoring, its cross-check figures summed (images, batches) and
        maximized (difference) over every rank. Called on every rank (it gathers)."""
        info = self.onnx_info
        if info is None or self.forward_pass is None or not self.forward_pass.cross_checks:
            return info
        verification = dict(info.get("verification") or {})
        figures = torch.tensor([float(verification.get(key) or 0) for key in _SUMMED + ("max_abs_diff",)], dtype=torch.float64)
        gathered = self.all_gather(figures.to(self.device)).double().cpu().reshape(-1, figures.numel())
        for column, key in enumerate(_SUMMED):
            verification[key] = int(gathered[:, column].sum())
        verification["max_abs_diff"] = float(gathered[:, -1].max())
        # With the flip test each test image and its mirror are two inputs of one batch: the count in test images.
        verification["images_checked"] = verification["inputs_checked"] // (2 if self.flip_test else 1)
        return {**info, "verification": verification, "source_verified": bool(info.get("source_verified")) and verification["images_checked"] > 0}

    def model_info(self) -> dict[str, Any]:
        """Architecture, parameter count and GFLOPs of the network that ran (see ``Forward.model_info``)."""
        assert self.arch is not None
        return self.forward_pass.model_info() if self.forward_pass is not None else arch_model_info(self.arch)

    # ------------------------------------------------------------------ inference

    def predict_coords(self, images: torch.Tensor, forward_pass: Forward | None = None) -> torch.Tensor:
        """(B, J, 3) heatmap coordinates of uint8 (or 0..255 float) crops; with flip test, one forward over the
        batch and its mirror. ``forward_pass`` replaces the module's own (the bench times another engine through this path)."""
        forward = forward_pass or self.forward_pass
        assert forward is not None and self.arch is not None
        if not self.flip_test:
            return forward(images)
        batch = images.shape[0]
        coords = forward(torch.cat([images, images.flip(3)]))
        plain, mirrored = coords[:batch], coords[batch:]
        mirrored = mirrored[:, self.flip_order].clone()
        mirrored[..., 0] = self.arch.heatmap_size - 1 - mirrored[..., 0]
        return (plain + mirrored) / 2

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Root-relative predicted and ground-truth joints (B, J, 3) in mm, float64, and what identifies them."""
        assert self.arch is not None
        geometry = dict(
            bbox=batch["bbox"], root_depth=batch["root_cam"][:, 2], focal=batch["focal"], center=batch["center"],
            heatmap_size=self.arch.heatmap_size, depth_dim=self.arch.depth_dim, depth_range=DEPTH_RANGE_MM,
        )  # fmt: skip
        if self.oracle:
            coords = camera_to_heatmap(batch["joint_cam"], **geometry)
        else:
            coords = self.predict_coords(batch["image"])
        with torch.autocast(self.device.type, enabled=False):
            pred_cam = heatmap_to_camera(coords.double(), **geometry)
            gt_coords = camera_to_heatmap(batch["joint_cam"], **geometry)
        check_finite(pred_cam, batch["image_id"], self.ckpt_path)
        gt_cam = batch["joint_cam"].double()
        to_crop = self.arch.input_size / self.arch.heatmap_size
        return {
            "pred_xy": coords[:, list(EVAL_JOINTS), :2].double() * to_crop,
            "gt_xy": gt_coords[:, list(EVAL_JOINTS), :2].double() * to_crop,
            "subject": batch["subject"],
            "pred_rel": pred_cam - pred_cam[:, ROOT_INDEX : ROOT_INDEX + 1],
            "gt_rel": gt_cam - gt_cam[:, ROOT_INDEX : ROOT_INDEX + 1],
            "action": batch["action"], "index": batch["index"], "image_id": batch["image_id"],
            "bbox": batch["bbox"], "root_cam": batch["root_cam"], "cached": batch["cached"],
        }  # fmt: skip



# The cross-check figures that add up over ranks.
_SUMMED = ("batches_scored", "batches_checked", "inputs_checked")


def check_finite(pred_cam: torch.Tensor, image_ids: torch.Tensor, source: str | None) -> None:
    """A NaN or infinite prediction would be scored as nothing at all: refuse it, naming the first image."""
    finite = torch.isfinite(pred_cam).flatten(1).all(dim=1)
    if not bool(finite.all()):
        first = int(image_ids[~finite][0])
        raise EvalError(
            f"{source or 'the network'}: non-finite predictions for {int((~finite).sum())} images in this batch "
            f"(first: image {first}); the weights or the input are broken"
        )
