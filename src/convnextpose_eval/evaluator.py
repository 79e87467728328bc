"""The LightningModule that loads a checkpoint, runs flip-test inference and scores every test image once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torchmetrics import SumMetric

from .checkpoint.architecture import load_weights, match_variant, resolve_arch
from .checkpoint.reader import LoadedCheckpoint, read_checkpoint
from .config.variants import released_specs
from .geometry import camera_to_heatmap, heatmap_to_camera
from .human36m import (
    ACTION_NAMES,
    DEPTH_RANGE_MM,
    EVAL_JOINTS,
    ROOT_INDEX,
    flip_permutation,
)
from .metrics import pose_metrics
from .network import ArchSpec, ConvNeXtPose
from .network.fuse import fold_batchnorm

# The weights were trained on 0..255 RGB values normalized with ImageNet's 0..1 statistics.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


class PoseEvaluator(pl.LightningModule):
    """Builds the network from the config and the checkpoint; ``on_test_epoch_end`` hands the scores on.

    ``on_results`` is called once, on global rank 0, with the metrics and the
    predictions of all ranks; it is how results leave the (possibly spawned) processes.
    """

    def __init__(
        self,
        variant: Mapping[str, Any],
        ckpt_path: str | None,
        flip_test: bool = True,
        channels_last: bool = True,
        fold_batchnorm: bool = True,
        oracle: bool = False,
        on_results: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.variant = dict(variant)
        self.ckpt_path = ckpt_path
        self.flip_test = flip_test
        self.channels_last = channels_last
        self.fold_batchnorm = fold_batchnorm
        self.oracle = oracle
        self.on_results = on_results
        self.network: ConvNeXtPose | None = None
        self.arch: ArchSpec | None = None
        self.checkpoint_info: dict[str, Any] = {}
        self.metrics = pose_metrics(len(ACTION_NAMES), EVAL_JOINTS)
        self.crop_cache_hits = SumMetric()
        self.crop_cache_misses = SumMetric()
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("flip_order", torch.tensor(flip_permutation()), persistent=False)
        self._predictions: list[dict[str, Any]] = []
        self._started = 0.0

    # ------------------------------------------------------------------ building

    def configure_network(self) -> None:
        """Load and check the checkpoint, build the matching network. Safe to call more than once."""
        if self.network is not None or self.arch is not None:
            return
        known = released_specs()
        if self.oracle and not self.ckpt_path:
            self.arch = self._oracle_arch(known)
            return
        ckpt: LoadedCheckpoint = read_checkpoint(self.ckpt_path)
        self.arch = resolve_arch(ckpt, self.variant, known)
        network = ConvNeXtPose(self.arch)
        load_weights(network, ckpt)
        network.eval()
        if self.fold_batchnorm:
            fold_batchnorm(network)
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        self.checkpoint_info = {
            "path": str(Path(self.ckpt_path).resolve()),
            "sha256": ckpt.sha256,
            "epoch": ckpt.epoch,
            "detected_variant": match_variant(self.arch, known),
            "key_style": ckpt.key_style,
        }

    def _oracle_arch(self, known: Mapping[str, ArchSpec]) -> ArchSpec:
        """The oracle needs only a heatmap geometry to round-trip through (any gives the same errors):
        the variant's, or the first released one's when the variant is auto."""
        if self.variant.get("depth_dim") is not None and (self.variant.get("head") or {}).get("upsample") is not None:
            return ArchSpec.from_variant(self.variant)
        return next(iter(known.values()))

    def setup(self, stage: str) -> None:
        self.configure_network()

    # ------------------------------------------------------------------ inference

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        images = (images.float() - self.pixel_mean) / self.pixel_std
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def predict_coords(self, images: torch.Tensor) -> torch.Tensor:
        """(B, J, 3) heatmap coordinates; with flip test, one forward over the batch and its mirror."""
        assert self.network is not None and self.arch is not None
        x = self._normalize(images)
        if not self.flip_test:
            return self.network(x).float()
        batch = x.shape[0]
        coords = self.network(torch.cat([x, x.flip(3)])).float()
        plain, mirrored = coords[:batch], coords[batch:]
        mirrored = mirrored[:, self.flip_order].clone()
        mirrored[..., 0] = self.arch.heatmap_size - 1 - mirrored[..., 0]
        return (plain + mirrored) / 2

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
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
            pred_rel = pred_cam - pred_cam[:, ROOT_INDEX : ROOT_INDEX + 1]
            gt_rel = batch["joint_cam"] - batch["joint_cam"][:, ROOT_INDEX : ROOT_INDEX + 1]
            for metric in self.metrics.values():
                metric.update(pred_rel, gt_rel, batch["action"])
        cached = batch["cached"].to(torch.float64)
        self.crop_cache_hits.update(cached.sum())
        self.crop_cache_misses.update((1 - cached).sum())
        # One device-to-host copy per field and batch, not per image.
        rows = zip(
            batch["index"].tolist(), batch["image_id"].tolist(), pred_rel[:, list(EVAL_JOINTS)].tolist(),
            batch["bbox"].tolist(), batch["root_cam"].tolist(),
        )  # fmt: skip
        for index, image_id, joints, bbox, root_cam in rows:
            self._predictions.append({"index": index, "image_id": image_id, "joint_cam": joints, "bbox": bbox, "root_cam": root_cam})

    def on_test_epoch_start(self) -> None:
        # Spawned ranks receive the module through shared memory: without fresh
        # state tensors every rank would add into the same storage.
        for metric in (*self.metrics.values(), self.crop_cache_hits, self.crop_cache_misses):
            metric.reset()
        self._predictions = []
        self._started = time.perf_counter()

    def on_test_epoch_end(self) -> None:
        scores = {name: metric.compute() for name, metric in self.metrics.items()}
        hits, misses = int(self.crop_cache_hits.compute()), int(self.crop_cache_misses.compute())
        predictions = self._gather_predictions()
        seconds = time.perf_counter() - self._started
        if self.trainer.is_global_zero and self.on_results is not None:
            predictions.sort(key=lambda p: p["index"])
            self.on_results(
                {
                    "scores": {name: {k: v.cpu() for k, v in value.items()} for name, value in scores.items()},
                    "predictions": [{k: v for k, v in p.items() if k != "index"} for p in predictions],
                    "crop_cache": {"hits": hits, "misses": misses},
                    "seconds": seconds,
                    "device": self.device.type,
                    "world_size": self.trainer.world_size,
                    "arch": self.arch,
                    "checkpoint": self.checkpoint_info,
                }
            )
        # Other ranks (launched by torchrun or srun) must not finish before rank 0 has written.
        self.trainer.strategy.barrier("results written")

    def _gather_predictions(self) -> list[dict[str, Any]]:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return list(self._predictions)
        shards: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(shards, self._predictions)
        return [p for shard in shards for p in shard or []]
