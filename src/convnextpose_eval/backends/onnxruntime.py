"""The ONNX Runtime engine: an exported file run in place of the PyTorch network, proven against its checkpoint.

Only the network call changes: normalization, the flip test, back-projection and the metrics are the
evaluator's shared code, so an exported model is scored exactly as PyTorch's. Provenance is decided
by computation, never by the file's own metadata. With a checkpoint known (``ckpt_path``, or the
cached export made from it, a cache hit included), a few real test crops and their mirrors run through
both before any scoring (a quick refusal of a plainly wrong file), and then a share of the very batches
being scored, drawn at random from a fresh seed each run (``scored_check.py``), runs through the
checkpoint's network too: a coordinate beyond the export tolerance stops the run with no results. The
structure of the file (no control flow, only the operators an export of this network needs) is checked
before anything runs (``onnx_checks.py``). Without a checkpoint the file is scored but recorded as
unverified: its parameter count and precision are read off its own weights. docs/onnx-trust.md says what
this proves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint.architecture import match_variant
from ..checkpoint.reader import sha256_of
from ..common.errors import BackendError
from ..network import ArchSpec
from .base import Forward, ForwardSource, arch_model_info
from .onnx_cache import cached_export, export_key
from .onnx_checks import (
    METADATA_PREFIX,
    SOURCE_FILE_KEY,
    SOURCE_SHA256_KEY,
    arch_from_metadata,
    check_model,
    first_line,
    precision_of,
    read_onnx_file,
    require,
    stored_weights,
)
from .onnx_export import DEFAULT_TOLERANCE
from .ort_session import make_session, providers_for, run_session
from .pytorch import PyTorchForward
from .scored_check import ScoredCheck

_RANDOM_CHECK_SEED = 20230602
_RANDOM_CHECK_CROPS = 4


class OnnxRuntimeForward(Forward):
    """An ONNX file's forward pass: normalized images (B, 3, S, S) -> coords (B, J, 3), on ONNX Runtime.

    Everything about the file is checked when it is opened, before any evaluation data is read: that it
    is a whole ONNX model with its external weights beside it, that its signature and stored
    architecture fit ``arch``, and that the provider exists. Pickling keeps the path and the sha256 and
    re-opens the file, so spawned workers get their own session of the same bytes.
    """

    engine = "onnxruntime"

    def __init__(self, path: Path | str, arch: ArchSpec, provider: str = "cpu") -> None:
        super().__init__(arch)
        self.path = Path(path)
        self.provider = provider
        self.source_verified = False
        self.verification: dict[str, Any] | None = None
        self.cache: dict[str, Any] | None = None
        self._input: torch.Tensor | None = None
        # The checkpoint's own network, kept to cross-check scored batches (set by ``build`` when one is known).
        self.reference: PyTorchForward | None = None
        self.scored_check: ScoredCheck | None = None
        self._open()

    def _open(self) -> None:
        ort = require("onnxruntime")
        self._ort = ort
        providers = providers_for(ort, self.provider)
        file = read_onnx_file(self.path)
        self.sha256 = file.sha256
        self.external = [{"location": e.location, "size": e.size, "sha256": e.sha256} for e in file.external]
        self._input_name, self._output_name = check_model(file, self.arch)
        self.opset = file.opset
        self.metadata = file.metadata
        self.stored_params, self.weight_dtypes = stored_weights(file.model)
        self._runtime_version = ort.__version__
        try:
            self._session = make_session(ort, file.session_bytes, providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's Fail / InvalidGraph / NotImplemented ...
            raise BackendError(f"{self.path}: onnxruntime cannot load it ({first_line(exc)})") from None
        if providers[0] not in self._session.get_providers():
            raise BackendError(f"{self.path}: onnxruntime could not start {providers[0]} for it; use the cpu provider")

    # ------------------------------------------------------------------ building from a source

    @classmethod
    def build(cls, source: ForwardSource) -> "OnnxRuntimeForward":
        """The file ``onnx_path``, or the cached export of ``ckpt_path``; proven against the checkpoint when one is known."""
        require("onnx")
        require("onnxruntime")
        if source.onnx_path is not None and source.ckpt_path is not None:
            _check_recorded_source(Path(source.onnx_path), Path(source.ckpt_path))
        reference = PyTorchForward.build(source) if source.ckpt_path else None
        if source.onnx_path is None:
            if reference is None or source.cache_dir is None:
                raise BackendError("backend=onnxruntime needs onnx_path=FILE.onnx, or a checkpoint to export into paths.cache_dir")
            forward = cls._from_cache(source, reference)
        else:
            arch = reference.arch if reference is not None else cls._arch_for_file(source)
            forward = cls(source.onnx_path, arch, source.provider)
            if reference is not None:
                forward.verify(reference, _check_crops(source, arch))
        if reference is not None:
            forward.checkpoint_info = reference.checkpoint_info
            forward.reference = reference
            forward.scored_check = ScoredCheck(source.check_share, source.check_min_batches)
        return forward

    @staticmethod
    def _arch_for_file(source: ForwardSource) -> ArchSpec:
        """The variant's architecture, or (``variant=auto``) the one the file records."""
        if source.variant.get("depth_dim") is not None:
            return ArchSpec.from_variant(source.variant)
        assert source.onnx_path is not None
        path = Path(source.onnx_path)
        stored = arch_from_metadata(path, read_onnx_file(path).metadata)
        if stored is None:
            raise BackendError(
                f"{path}: records no architecture (not written by python -m convnextpose_eval.export); "
                "name the variant: variant=XS|S|M|L"
            )
        return stored

    @classmethod
    def _from_cache(cls, source: ForwardSource, reference: PyTorchForward) -> "OnnxRuntimeForward":
        """The cached export of the checkpoint (made now on a miss), run against it; a cached file that fails is rebuilt once."""
        info = reference.checkpoint_info or {}
        key = export_key(info["sha256"], reference.arch, source.opset, source.fold_batchnorm, source.channels_last)
        crops: list[torch.Tensor] = []

        def crops_once() -> torch.Tensor:
            if not crops:
                crops.append(_check_crops(source, reference.arch))
            return crops[0]

        def normalized() -> torch.Tensor:
            batch = crops_once()
            return reference.normalize(torch.cat([batch, batch.flip(3)]))

        variant = match_variant(reference.arch, source.known)
        provenance = {"file": Path(info["path"]).name, "sha256": info["sha256"]}
        for rebuild in (False, True):
            entry = cached_export(reference.network, Path(str(source.cache_dir)), variant, key, provenance, normalized, rebuild)
            forward = None
            try:
                forward = cls(entry.path, reference.arch, source.provider)
                forward.verify(reference, crops_once())
            except BackendError:
                if rebuild or not entry.hit:
                    raise
                continue  # a damaged or replaced cache entry: export again
            forward.cache = {"path": str(entry.path), "key": entry.key, "hit": entry.hit}
            return forward
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ provenance

    def verify(self, reference: PyTorchForward, crops: torch.Tensor) -> None:
        """Run ``crops`` and their mirrors through this file and the checkpoint's own network; refuse any difference."""
        info = reference.checkpoint_info or {}
        name = info.get("path", "the checkpoint")
        if set(self.weight_dtypes) - {"float32"}:
            kinds = ", ".join(f"{count} {dtype}" for dtype, count in sorted(self.weight_dtypes.items()))
            raise BackendError(f"{self.path}: stores its weights as {kinds} tensors, but {name} holds float32 weights: not that network")
        batch = torch.cat([crops, crops.flip(3)]).cpu()
        with torch.inference_mode():
            expected = reference.to("cpu")(batch).numpy()
            got = self(batch).numpy()
        if got.shape != expected.shape or not np.isfinite(got).all():
            raise BackendError(f"{self.path}: returns {got.shape} coordinates (or non-finite ones) where {name} gives {expected.shape}")
        diff = float(np.abs(got - expected).max())
        if not diff <= DEFAULT_TOLERANCE:
            raise BackendError(
                f"{self.path}: does not compute the network of {name}: on {crops.shape[0]} test crops and their mirrors its "
                f"coordinates differ by up to {diff:.3g} heatmap units (tolerance {DEFAULT_TOLERANCE:g}); export that checkpoint again"
            )
        self.source_verified = True
        self.verification = {"checkpoint_sha256": info.get("sha256"), "tolerance": DEFAULT_TOLERANCE,
                             "precheck_images": int(batch.shape[0]), "precheck_max_abs_diff": diff,
                             "max_abs_diff": diff}  # fmt: skip

    # ------------------------------------------------------------------ proof on the scored batches

    @property
    def cross_checks(self) -> bool:
        return self.reference is not None and self.scored_check is not None

    def begin_scoring(self, num_batches: int, seed: int, rank: int = 0) -> None:
        if self.scored_check is not None:
            self.scored_check.plan(num_batches, seed, rank)

    def _cross_check(self, crops: torch.Tensor, coords: torch.Tensor) -> None:
        """Run a drawn scored batch through the checkpoint's network too; stop the run on any difference."""
        assert self.reference is not None and self.scored_check is not None
        index = self.scored_check.batches_scored - 1
        expected = self.reference(crops).float()
        name = (self.checkpoint_info or {}).get("path", "its checkpoint")
        if expected.shape != coords.shape or not bool(torch.isfinite(coords).all()):
            raise BackendError(
                f"{self.path}: on scored batch {index} it returns {tuple(coords.shape)} coordinates (or non-finite ones) "
                f"where {name} gives {tuple(expected.shape)}; no results written"
            )
        diff = float((coords.to(expected.device) - expected).abs().max())
        advice = "; it is a cached export that was replaced: delete it to export again" if self.cache else ""
        if not diff <= DEFAULT_TOLERANCE:
            raise BackendError(
                f"{self.path}: does not compute the network of {name}: on scored batch {index} ({crops.shape[0]} images, "
                f"drawn at random for a cross-check) its coordinates differ by up to {diff:.3g} heatmap units "
                f"(tolerance {DEFAULT_TOLERANCE:g}); no results written{advice}"
            )
        self.scored_check.record(int(crops.shape[0]), diff)

    # ------------------------------------------------------------------ running and describing

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """As every engine, with the normalized batch written into one float32 buffer kept from call to call:
        ONNX Runtime has read it when ``run`` returns, and a fresh 25 MB batch each call cost more in page
        faults than the arithmetic (about 15 ms of a 300 ms XS batch on two cores). So one engine serves
        one thread at a time, as the evaluator calls it."""
        if self._input is None or self._input.shape != crops.shape:
            with torch.inference_mode(False):  # a normal tensor, writable in and out of inference mode
                self._input = torch.empty(crops.shape, dtype=torch.float32)
        coords = self.run(self.normalize(crops.cpu(), out=self._input)).float().to(crops.device)
        if self.scored_check is not None and self.scored_check.seed is not None and self.scored_check.next_batch_is_checked():
            self._cross_check(crops, coords)
        return coords

    def run(self, images: torch.Tensor) -> torch.Tensor:
        size = self.arch.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise BackendError(f"{self.path}: takes (B, 3, {size}, {size}) images, got {tuple(images.shape)}")
        array = images.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
        coords = run_session(self._session, self._ort, [self._output_name], {self._input_name: array}, self.path)[0]
        return torch.from_numpy(coords).to(images.device)

    def info(self) -> dict[str, Any]:
        """What results.json records of the file: its identity, the runtime, and what vouches for its weights."""
        recorded_sha = self.metadata.get(METADATA_PREFIX + SOURCE_SHA256_KEY)
        recorded_file = self.metadata.get(METADATA_PREFIX + SOURCE_FILE_KEY)
        checked = self.checkpoint_info if self.source_verified else None
        verification = self.verification
        if verification is not None and self.scored_check is not None and self.scored_check.seed is not None:
            scored = self.scored_check.to_dict()
            # The largest difference of every comparison this run made, the pre-check's included.
            scored["max_abs_diff"] = max(scored["max_abs_diff"], verification["precheck_max_abs_diff"])
            verification = {**verification, **scored}
        return {
            "path": str(self.path.resolve()),
            "sha256": self.sha256,
            "external_data": self.external,
            "provider": self.provider,
            "onnxruntime_version": self._runtime_version,
            "opset": self.opset,
            "source_verified": self.source_verified,
            "verification": verification,
            "source_checkpoint_sha256": checked["sha256"] if checked else recorded_sha,
            "source_checkpoint_file": Path(checked["path"]).name if checked else recorded_file,
            "stored_params": self.stored_params,
            "weight_dtypes": self.weight_dtypes,
            "cache": self.cache,
        }

    def describe(self) -> dict[str, Any]:
        return {"backend": self.engine, "precision": precision_of(self.weight_dtypes), "onnx": self.info()}

    def model_info(self) -> dict[str, Any]:
        """The architecture's figures when the file was proven to compute it; else the parameters it really stores."""
        info = arch_model_info(self.arch)
        return info if self.source_verified else {**info, "params": self.stored_params}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_session", None)
        state.pop("_ort", None)
        state["_input"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        expected = self.sha256
        self._open()
        if self.sha256 != expected:
            raise BackendError(f"{self.path}: changed on disk since it was first opened (sha256 differs)")


def _check_recorded_source(path: Path, ckpt_path: Path) -> None:
    """A file that records another checkpoint than ``ckpt_path`` is refused at once, before either is run."""
    recorded = read_onnx_file(path).metadata.get(METADATA_PREFIX + SOURCE_SHA256_KEY)
    actual = sha256_of(ckpt_path)
    if recorded is not None and recorded != actual:
        raise BackendError(
            f"{path}: was exported from a checkpoint with sha256 {recorded[:16]}..., but ckpt_path={ckpt_path} "
            f"has sha256 {actual[:16]}...; export this checkpoint or drop ckpt_path"
        )


def _check_crops(source: ForwardSource, arch: ArchSpec) -> torch.Tensor:
    """Real test crops from the run's data when the caller can give them; else seeded random 0..255 crops."""
    if source.check_crops is not None:
        return source.check_crops(arch)
    generator = torch.Generator().manual_seed(_RANDOM_CHECK_SEED)
    size = arch.input_size
    return torch.randint(0, 256, (_RANDOM_CHECK_CROPS, 3, size, size), generator=generator, dtype=torch.uint8)
