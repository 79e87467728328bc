"""The LightningModule: loads and checks the checkpoint in ``setup``, runs flip-test inference, back-projects.

The forward pass is the PyTorch network, or an exported ONNX file run by ONNX Runtime (``backend``);
normalization, the flip test and back-projection are the same code for both. It scores nothing itself:
each ``test_step`` returns root-relative predictions and ground truth in mm, and the results callback
(``results/writer.py``) turns them into metrics and files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
import torch

from .checkpoint.architecture import load_weights, match_variant, resolve_arch
from .checkpoint.reader import LoadedCheckpoint, read_checkpoint
from .errors import BackendError, EvalError
from .geometry import camera_to_heatmap, heatmap_to_camera
from .human36m import (
    DEPTH_RANGE_MM,
    EVAL_JOINTS,
    ROOT_INDEX,
    flip_permutation,
)
from .network import ArchSpec, ConvNeXtPose, count_macs, count_parameters
from .network.fuse import fold_batchnorm
from .onnx_backend import OnnxForward, read_onnx_arch

# The weights were trained on 0..255 RGB values normalized with ImageNet's 0..1 statistics.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


class PoseEvaluator(pl.LightningModule):
    """Builds the network from the variant config and the checkpoint; predicts camera-space poses."""

    def __init__(
        self,
        variant: Mapping[str, Any],
        ckpt_path: str | None,
        flip_test: bool = True,
        channels_last: bool = True,
        fold_batchnorm: bool = True,
        oracle: bool = False,
        tf32: bool = False,
        known_variants: Mapping[str, Mapping[str, Any]] | None = None,
        onnx_path: str | None = None,
        onnx_provider: str = "cpu",
    ) -> None:
        super().__init__()
        self.variant = dict(variant)
        self.ckpt_path = ckpt_path
        self.flip_test = flip_test
        self.channels_last = channels_last
        self.fold_batchnorm = fold_batchnorm
        self.oracle = oracle
        self.tf32 = tf32
        self.onnx_path = onnx_path
        self.onnx_provider = onnx_provider
        self.known = {name: ArchSpec.from_variant(node) for name, node in (known_variants or {}).items()}
        self.network: ConvNeXtPose | OnnxForward | None = None
        self.arch: ArchSpec | None = None
        self.checkpoint_info: dict[str, Any] = {}
        self.onnx_info: dict[str, Any] | None = None
        self.detected_variant: str | None = None
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("flip_order", torch.tensor(flip_permutation()), persistent=False)

    # ------------------------------------------------------------------ building

    def configure_network(self) -> None:
        """Load and check the checkpoint, build the matching network. Safe to call more than once."""
        if self.network is not None or self.arch is not None:
            return
        known = self.known
        if self.oracle and not self.ckpt_path:
            self.arch = self._oracle_arch(known)
            return
        if self.onnx_path is not None:
            self._open_onnx(known)
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
            "dtype_note": ckpt.dtype_note,
        }
        self.detected_variant = self.checkpoint_info["detected_variant"]

    def _open_onnx(self, known: Mapping[str, ArchSpec]) -> None:
        """The architecture from the variant config (or, for ``auto``, from the file's metadata), and the
        file checked against it: a file exported from another variant fails here, before any data is read."""
        assert self.onnx_path is not None
        path = Path(self.onnx_path)
        if self.variant.get("depth_dim") is not None:
            self.arch = ArchSpec.from_variant(self.variant)
        else:
            stored = read_onnx_arch(path)
            if stored is None:
                raise BackendError(
                    f"{path}: records no architecture (not written by python -m convnextpose_eval.export); "
                    "name the variant: variant=XS|S|M|L"
                )
            self.arch = stored
        self.network = OnnxForward(path, self.arch, self.onnx_provider)
        self.onnx_info = self.network.info()
        if self.ckpt_path:
            self._check_onnx_source(path)
        self.detected_variant = match_variant(self.arch, known)

    def _check_onnx_source(self, path: Path) -> None:
        """With ``ckpt_path`` given too, the file must have been exported from that checkpoint."""
        assert self.onnx_info is not None and self.ckpt_path is not None
        recorded = self.onnx_info["source_checkpoint_sha256"]
        actual = read_checkpoint(self.ckpt_path).sha256
        if recorded is None:
            raise BackendError(
                f"{path}: records no source checkpoint, so it cannot be matched to ckpt_path={self.ckpt_path}; drop ckpt_path"
            )
        if recorded != actual:
            raise BackendError(
                f"{path}: was exported from a checkpoint with sha256 {recorded[:16]}..., but ckpt_path={self.ckpt_path} "
                f"has sha256 {actual[:16]}...; export this checkpoint or drop ckpt_path"
            )

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

    def model_info(self) -> dict[str, Any]:
        """Architecture, parameter count and GFLOPs (multiply-accumulates) of the network as built.

        Counted on the meta device: shapes only, no weights initialized and no arithmetic done, so the
        count costs milliseconds instead of a forward pass at the end of every run.
        """
        assert self.arch is not None
        with torch.device("meta"):
            network = ConvNeXtPose(self.arch)
        arch = {k: list(v) if isinstance(v, tuple) else v for k, v in self.arch.to_dict().items()}
        return {"arch": arch, "heatmap_size": self.arch.heatmap_size, "params": count_parameters(network),
                "gflops": round(count_macs(network) / 1e9, 4)}  # fmt: skip

    # ------------------------------------------------------------------ inference

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0..255) RGB crops -> the normalized network input, in the layout the network runs in."""
        images = (images.float() - self.pixel_mean) / self.pixel_std
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def predict_coords(self, images: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """(B, J, 3) heatmap coordinates; with flip test, one forward over the batch and its mirror.

        ``network`` replaces the module's own forward pass (the bench times an ONNX file through this same path).
        """
        forward = network or self.network
        assert forward is not None and self.arch is not None
        x = self.normalize(images)
        if not self.flip_test:
            return forward(x).float()
        batch = x.shape[0]
        coords = forward(torch.cat([x, x.flip(3)])).float()
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



def check_finite(pred_cam: torch.Tensor, image_ids: torch.Tensor, source: str | None) -> None:
    """A NaN or infinite prediction would be scored as nothing at all: refuse it, naming the first image."""
    finite = torch.isfinite(pred_cam).flatten(1).all(dim=1)
    if not bool(finite.all()):
        first = int(image_ids[~finite][0])
        raise EvalError(
            f"{source or 'the network'}: non-finite predictions for {int((~finite).sum())} images in this batch "
            f"(first: image {first}); the weights or the input are broken"
        )
