"""``python -m convnextpose_eval.bench [run_eval.py overrides]``: five throughputs, side by side, one run.

(a) eager_fp32_ips: the network work of an evaluation (flip test included) the plain way: NCHW float32,
    ``torch.no_grad``, the image and its mirror as two forward passes.
(b) inference_ips: the same work as this project does it: BatchNorm folded into the convolutions,
    channels_last, ``torch.inference_mode``, image and mirror in one batched forward, autocast when
    ``trainer.precision`` asks for it.
(c) pipeline_ips: a whole ``trainer.test`` (reading, cropping or the crop cache, inference, metrics),
    timed after a first pass has warmed the crop cache.
(d) data_ips: the data path alone: the test dataloader (same batch size, crop store warm) iterated
    without the network.
(e) onnx_ips: (b)'s work with the forward pass done by ONNX Runtime (``onnx_provider``) on the network
    exported from the same checkpoint, on the same crops; null, with the reason, when the optional
    packages are missing.

(a) and (b) run on the same decoded crops, held in memory, and their outputs are compared. Each
measurement is repeated ``bench.repeats`` times and the fastest repeat counts. Under a reduced
``trainer.precision`` the pipeline also runs in float32 to report the MPJPE change. The last line
printed is one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig
from torch.utils.data import Subset

from .checkpoint.architecture import load_weights
from .checkpoint.reader import read_checkpoint
from .config.checks import checked_config, quote_home_paths
from .config.compose import compose_config, composition_error
from .config.help import HELP_FLAGS, command_help
from .config.schema import Backend, EvalConfig, Strategy
from .errors import BackendError, ConfigError, EvalError, one_line
from .evaluation import (
    build_datamodule,
    build_evaluator,
    build_trainer,
    inference_settings,
    quiet_lightning,
    run_settings,
    uses_gpu,
)
from .evaluator import PIXEL_MEAN, PIXEL_STD, PoseEvaluator
from .network import ConvNeXtPose
from .onnx_backend import OnnxForward, export_onnx, require_onnx_packages
from .results.writer import ResultsWriter


def _device(cfg: DictConfig) -> torch.device:
    return torch.device("cuda" if uses_gpu(cfg) else "cpu")


def _autocast(settings: EvalConfig, device: torch.device):
    precision = settings.trainer.precision
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def _best_time(step: Callable[[], None], repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def run_bench(settings: EvalConfig, scratch: Path) -> dict[str, object]:
    """Measure (a), (b), (c) and (d) on the first ``bench.images`` test images; the pipeline's files go to ``scratch``."""
    if settings.trainer.strategy is Strategy.ddp:
        raise ConfigError("the bench measures one device: use trainer=cpu or trainer=gpu")
    if settings.backend is not Backend.pytorch:
        raise ConfigError("backend=onnxruntime: the bench exports the checkpoint and times ONNX Runtime itself, as (e); drop backend and onnx_path")
    settings = dataclasses.replace(settings, flip_test=True, oracle=False)
    settings.trainer.progress_bar = False
    module = build_evaluator(settings)
    datamodule = build_datamodule(settings, module.arch.input_size)
    if settings.bench.images and settings.bench.images < len(datamodule.dataset):
        datamodule.dataset = Subset(datamodule.dataset, range(settings.bench.images))
    count = len(datamodule.dataset)
    device = _device(settings)
    repeats = settings.bench.repeats
    batch_size = settings.data.batch_size

    def pipeline(exact: bool = False) -> float:
        """One whole trainer.test; returns its MPJPE. ``exact``: float32 without TF32, whatever was asked."""
        run = settings
        if exact:
            run = dataclasses.replace(settings, trainer=dataclasses.replace(settings.trainer, precision="32-true", tf32=False))
        module.tf32 = run.trainer.tf32
        writer = ResultsWriter(scratch, run_settings(run, None), inference_settings(run))
        build_trainer(run, [writer]).test(module, datamodule=datamodule, verbose=False)
        module.tf32 = settings.trainer.tf32
        return float(writer.results["metrics"]["mpjpe"])

    pipeline()  # warm the crop cache, the allocator and the worker start-up paths
    images = torch.stack([datamodule.dataset[i]["image"] for i in range(count)])
    batches = [images[i : i + batch_size] for i in range(0, count, batch_size)]

    eager = ConvNeXtPose(module.arch)
    load_weights(eager, read_checkpoint(module.ckpt_path))
    eager = eager.eval().to(device)
    mean = torch.tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=device).view(1, 3, 1, 1)
    flip_order = module.flip_order.to(device)
    size = module.arch.heatmap_size

    def eager_coords(batch: torch.Tensor) -> torch.Tensor:
        x = (batch.to(device).float() - mean) / std
        plain, mirrored = eager(x), eager(torch.flip(x, dims=[3]))[:, flip_order]
        mirrored[..., 0] = size - 1 - mirrored[..., 0]
        return (plain + mirrored) / 2

    def eager_pass() -> None:
        # The plain way is exact float32: no TF32, whatever (b) and (c) were asked to use.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            for batch in batches:
                eager_coords(batch)

    module.to(device)

    def inference_pass() -> None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = settings.trainer.tf32
        with torch.inference_mode(), _autocast(settings, device):
            for batch in batches:
                module.predict_coords(batch.to(device, non_blocking=True))

    with torch.inference_mode(), _autocast(settings, device):
        fast = module.predict_coords(batches[0].to(device)).float()
    with torch.no_grad():
        coord_diff = float((eager_coords(batches[0]) - fast).abs().max())

    eager_pass()
    inference_pass()
    eager_s = _best_time(eager_pass, repeats, device)
    inference_s = _best_time(inference_pass, repeats, device)
    pipeline_s = _best_time(pipeline, repeats, device)

    onnx = _onnx_rate(settings, module, batches, scratch, fast, inference_s, device)

    def data_pass() -> None:
        for _ in datamodule.test_dataloader():
            pass

    data_s = _best_time(data_pass, repeats, device)
    mpjpe = pipeline()
    reduced_precision = not settings.trainer.precision.startswith("32") or settings.trainer.tf32
    exact_mpjpe = pipeline(exact=True) if reduced_precision else mpjpe
    return {
        "variant": settings.variant.name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "batch_size": batch_size,
        "num_images": count,
        "eager_fp32_ips": count / eager_s,
        "inference_ips": count / inference_s,
        "pipeline_ips": count / pipeline_s,
        "data_ips": count / data_s,
        "inference_vs_eager": eager_s / inference_s,
        "pipeline_vs_inference": inference_s / pipeline_s,
        "precision": settings.trainer.precision,
        "tf32": settings.trainer.tf32,
        "max_coord_diff_vs_eager": coord_diff,
        "mpjpe": mpjpe,
        "mpjpe_change_vs_fp32": mpjpe - exact_mpjpe if reduced_precision else 0.0,
        **onnx,
    }


def _onnx_rate(settings: EvalConfig, module: PoseEvaluator, batches: list[torch.Tensor], scratch: Path,
               reference: torch.Tensor, inference_s: float, device: torch.device) -> dict[str, object]:  # fmt: skip
    """(e): export the evaluator's network to ``scratch`` and time ONNX Runtime through the same flip-test path.

    ``reference`` is (b)'s output on the first batch and ``inference_s`` (b)'s best time, measured just before.
    """
    assert module.network is not None and module.arch is not None
    try:
        require_onnx_packages()
        path = export_onnx(module.network, scratch / "bench.onnx", opset=settings.export.opset).path
        forward = OnnxForward(path, module.arch, settings.onnx_provider.value)
    except BackendError as exc:  # (e) is optional: (a) to (d) still stand without it
        return {"onnx_ips": None, "onnx_vs_inference": None, "onnx_max_coord_diff": None, "onnx_note": one_line(exc)}

    def onnx_pass() -> None:
        with torch.inference_mode():
            for batch in batches:
                module.predict_coords(batch.to(device), network=forward)

    with torch.inference_mode():
        diff = float((module.predict_coords(batches[0].to(device), network=forward) - reference).abs().max())
    onnx_pass()
    onnx_s = _best_time(onnx_pass, settings.bench.repeats, device)
    count = sum(batch.shape[0] for batch in batches)
    return {"onnx_ips": count / onnx_s, "onnx_vs_inference": inference_s / onnx_s, "onnx_max_coord_diff": diff,
            "onnx_provider": settings.onnx_provider.value}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Compose the config from ``argv`` overrides, measure, print the table and the JSON line."""
    quiet_lightning()
    overrides = list(sys.argv[1:] if argv is None else argv)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if set(HELP_FLAGS) & set(overrides):
        print(command_help(__doc__ or "", overrides))
        return 0
    problem = composition_error(overrides)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="convnextpose-bench-") as scratch:
            result = run_bench(checked_config(compose_config(quote_home_paths(overrides))), Path(scratch))
    except (EvalError, HydraException, OmegaConfBaseException) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"{'measurement':<44}{'images/s':>10}")
    print(f"{'(a) eager NCHW fp32, two forwards':<44}{result['eager_fp32_ips']:>10.2f}")
    print(f"{'(b) project inference settings':<44}{result['inference_ips']:>10.2f}   {result['inference_vs_eager']:.2f}x (a)")
    print(f"{'(c) whole pipeline, crop cache warm':<44}{result['pipeline_ips']:>10.2f}   {result['pipeline_vs_inference']:.2f}x (b)")
    print(f"{'(d) data path alone, crop store warm':<44}{result['data_ips']:>10.2f}")
    if result["onnx_ips"] is not None:
        print(f"{'(e) ONNX Runtime (' + str(result['onnx_provider']) + '), same crops':<44}{result['onnx_ips']:>10.2f}   "
              f"{result['onnx_vs_inference']:.2f}x (b); max |coords - (b)| {result['onnx_max_coord_diff']:.1e}")  # fmt: skip
    else:
        print(f"(e) ONNX Runtime: not measured ({result['onnx_note']})")
    print(f"heatmap coordinates vs (a): max |diff| {result['max_coord_diff_vs_eager']:.2e}; MPJPE {result['mpjpe']:.2f} mm "
          f"({result['precision']}, change vs fp32 {result['mpjpe_change_vs_fp32']:+.3f} mm)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
