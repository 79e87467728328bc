"""``python -m convnextpose_eval.bench [run_eval.py overrides]``: six throughputs, side by side, one run.

(a) eager_fp32_ips: the network work of an evaluation (flip test included) the plain way: NCHW float32,
    ``torch.no_grad``, the image and its mirror as two forward passes.
(b) inference_ips: the same work as this project's PyTorch engine does it: BatchNorm folded into the
    convolutions, channels_last, ``torch.inference_mode``, image and mirror in one batched forward,
    autocast when ``trainer.precision`` asks for it.
(c) pipeline_ips: a whole ``trainer.test`` with the PyTorch engine after a first pass has warmed the crop
    cache: the images over its test loop (every batch read from the crop store, run, back-projected and
    scored, as results.json's ``throughput`` times it); the run's fixed costs (trainer start, writing
    predictions.json and worst_cases.png) apart, as pipeline_fixed_s, since they do not grow with the images.
(d) data_ips: the data path alone: the test dataloader (same batch size, crop store warm) iterated
    without the network.
(e) onnx_ips: (b)'s work with the forward pass done by ONNX Runtime (``onnx_provider``) on the
    checkpoint's cached export (``paths.cache_dir``, exported and proven against the checkpoint on first
    use), on the same crops.
(f) onnx_pipeline_ips: (c) with the ONNX Runtime engine, as ``backend=onnxruntime`` runs it, with the
    export cache warm; onnx_pipeline_fixed_s its fixed costs. Its cost of proof is inside it: the scored
    batches drawn for the cross-check also run through the checkpoint's PyTorch network
    (onnx_pipeline_images_cross_checked of the images; docs/onnx-trust.md, "The cost").
(e) and (f) are null, with the reason, when the ONNX packages are missing or the export fails.

(a), (b) and (e) run on the same decoded crops, held in memory, and their outputs are compared. Each
measurement is repeated ``bench.repeats`` times and the fastest repeat counts; the repeats are taken in
rounds ((a), (b), (e), (c), (f), then again), so that every ratio, (f)/(a) included, compares like with
like on a machine whose speed drifts. Under a reduced
``trainer.precision`` the pipeline also runs in float32 to report the MPJPE change. Progress (phase,
images done) goes to stderr; the last line printed on stdout is one JSON object.
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
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import Subset

from ..backends import PIXEL_MEAN, PIXEL_STD, Forward
from ..checkpoint.architecture import load_weights
from ..checkpoint.reader import read_checkpoint
from ..common.errors import BackendError, ConfigError, EvalError, one_line
from ..config.checks import checked_config, quote_home_paths
from ..config.compose import compose_config, composition_error
from ..config.help import HELP_FLAGS, command_help
from ..config.schema import EvalConfig, Strategy
from ..model.evaluator import PoseEvaluator
from ..network import ConvNeXtPose
from ..results.writer import ResultsWriter
from ..run.evaluation import (
    build_datamodule,
    build_evaluator,
    build_trainer,
    check_crops_from,
    inference_settings,
    quiet_lightning,
    run_settings,
    uses_gpu,
)
from ..run.plan import PYTORCH, RunPlan, plan_run

# Progress lines at most this often (and at the end of each pass), so a long bench is never silent.
PROGRESS_EVERY_S = 5.0


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """One trainer.test: its MPJPE, the seconds of its test loop (every batch read, run, back-projected and
    scored), the rest of its wall time (trainer start, writing predictions.json and worst_cases.png), and
    how many of its images an ONNX Runtime engine also ran through the checkpoint's network (None: PyTorch)."""

    mpjpe: float
    loop_s: float
    fixed_s: float
    images_cross_checked: int | None = None


class Progress:
    """``bench: <phase>: <done>/<total> images`` on stderr, throttled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._last = 0.0

    def __call__(self, phase: str, done: int) -> None:
        now = time.monotonic()
        if done >= self.total or now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            print(f"bench: {phase}: {done}/{self.total} images", file=sys.stderr, flush=True)


class _PipelineProgress(pl.Callback):
    """Reports a trainer.test's images done through :class:`Progress`."""

    def __init__(self, progress: Progress, phase: str) -> None:
        self.progress, self.phase, self.done = progress, phase, 0

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        self.done += int(batch["image"].shape[0])
        self.progress(self.phase, self.done)


def _device(cfg: DictConfig) -> torch.device:
    return torch.device("cuda" if uses_gpu(cfg) else "cpu")


def _autocast(settings: EvalConfig, device: torch.device):
    precision = settings.trainer.precision
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def _timed(step: Callable[[], None], device: torch.device) -> Callable[[], float]:
    """``step`` made to return its own seconds (with the GPU's queue drained on both sides)."""

    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return run


def _rounds(steps: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Every step once per round, for ``repeats`` rounds: a slow spell of a shared machine then falls on
    all the measurements alike instead of on whichever one was running, which would skew their ratios."""
    out: dict[str, list[Any]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            out[name].append(step())
    return out


def run_bench(settings: EvalConfig, scratch: Path) -> dict[str, object]:
    """Measure (a) to (f) on the first ``bench.images`` test images; the pipelines' files go to ``scratch``."""
    if settings.trainer.strategy is Strategy.ddp:
        raise ConfigError("the bench measures one device: use trainer=cpu or trainer=gpu")
    settings = dataclasses.replace(settings, flip_test=True, oracle=False)
    settings.trainer.progress_bar = False
    plan = plan_run(settings, engine=PYTORCH, purpose="the bench times the PyTorch engine and ONNX Runtime side by side, "
                    "as (b)/(c) and (e)/(f); drop backend and onnx_path")  # fmt: skip
    module = build_evaluator(plan)
    datamodule = build_datamodule(settings, module.arch.input_size)
    if settings.bench.images and settings.bench.images < len(datamodule.dataset):
        datamodule.dataset = Subset(datamodule.dataset, range(settings.bench.images))
    count = len(datamodule.dataset)
    device = _device(settings)
    repeats = settings.bench.repeats
    batch_size = settings.data.batch_size
    progress = Progress(count)

    def pipeline(phase: str, evaluator: PoseEvaluator = module, run: EvalConfig = settings) -> PipelineRun:
        """One whole trainer.test: its MPJPE, its test loop's seconds and the rest of its wall time."""
        evaluator.tf32 = run.trainer.tf32
        writer = ResultsWriter(scratch, run_settings(run, None), inference_settings(run, evaluator.describe_engine()))
        start = time.perf_counter()
        build_trainer(run, [writer, _PipelineProgress(progress, phase)]).test(evaluator, datamodule=datamodule, verbose=False)
        wall = time.perf_counter() - start
        evaluator.tf32 = settings.trainer.tf32
        loop = float(writer.results["throughput"]["seconds"])
        verification = (writer.results["inference"].get("onnx") or {}).get("verification") or {}
        checked = verification.get("images_checked")
        return PipelineRun(float(writer.results["metrics"]["mpjpe"]), loop, wall - loop, None if checked is None else int(checked))

    pipeline("warm-up: first pipeline pass (crop cache)")
    images = torch.stack([datamodule.dataset[i]["image"] for i in range(count)])
    batches = [images[i : i + batch_size] for i in range(0, count, batch_size)]

    eager = ConvNeXtPose(module.arch)
    load_weights(eager, read_checkpoint(plan.checkpoint.path))  # the plan's read, not a second one (common/read_once.py)
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

    def timed_pass(phase: str, step: Callable[[torch.Tensor], object]) -> Callable[[], float]:
        def run() -> None:
            done = 0
            for batch in batches:
                step(batch)
                done += batch.shape[0]
                progress(phase, done)

        return _timed(run, device)

    def eager_step(batch: torch.Tensor) -> None:
        # The plain way is exact float32: no TF32, whatever (b) and (c) were asked to use.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            eager_coords(batch)

    module.to(device)

    def inference_step(batch: torch.Tensor) -> None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = settings.trainer.tf32
        with torch.inference_mode(), _autocast(settings, device):
            module.predict_coords(batch.to(device, non_blocking=True))

    with torch.inference_mode(), _autocast(settings, device):
        fast = module.predict_coords(batches[0].to(device)).float()
    with torch.no_grad():
        coord_diff = float((eager_coords(batches[0]) - fast).abs().max())

    onnx_module, onnx_note = _onnx_engine(plan, datamodule)
    passes = {"a": timed_pass("(a) eager fp32", eager_step), "b": timed_pass("(b) inference", inference_step)}
    if onnx_module is not None:
        forward = onnx_module.forward_pass
        assert isinstance(forward, Forward)

        def onnx_step(batch: torch.Tensor) -> None:
            with torch.inference_mode():
                module.predict_coords(batch.to(device), forward_pass=forward)

        with torch.inference_mode():
            onnx_diff = float((module.predict_coords(batches[0].to(device), forward_pass=forward) - fast).abs().max())
        passes["e"] = timed_pass("(e) ONNX Runtime", onnx_step)
    for warm_up in passes.values():
        warm_up()
    pipelines: dict[str, Callable[[], PipelineRun]] = {"c": lambda: pipeline("(c) pipeline")}
    if onnx_module is not None:
        pipeline("warm-up: first ONNX Runtime pipeline pass", evaluator=onnx_module)
        pipelines["f"] = lambda: pipeline("(f) ONNX Runtime pipeline", evaluator=onnx_module)
    measured = _rounds({**passes, **pipelines}, repeats)
    best = {name: min(measured[name]) for name in passes}
    piped = {name: PipelineRun(runs[0].mpjpe, min(r.loop_s for r in runs), min(r.fixed_s for r in runs), runs[0].images_cross_checked)
             for name, runs in measured.items() if name in pipelines}  # fmt: skip

    def data_pass() -> None:
        done = 0
        for batch in datamodule.test_dataloader():
            done += batch["image"].shape[0]
            progress("(d) data path", done)

    timed_data_pass = _timed(data_pass, device)
    data_s = min(timed_data_pass() for _ in range(repeats))
    mpjpe = piped["c"].mpjpe
    reduced_precision = not settings.trainer.precision.startswith("32") or settings.trainer.tf32
    if reduced_precision:
        exact = dataclasses.replace(settings, trainer=dataclasses.replace(settings.trainer, precision="32-true", tf32=False))
        exact_mpjpe = pipeline("float32 MPJPE pass", run=exact).mpjpe
    else:
        exact_mpjpe = mpjpe
    eager_s, inference_s = best["a"], best["b"]
    if onnx_module is not None:
        onnx_s, onnx_piped = best["e"], piped["f"]
        onnx_info = onnx_module.onnx_info or {}
        onnx: dict[str, object] = {
            "onnx_ips": count / onnx_s, "onnx_vs_inference": inference_s / onnx_s, "onnx_max_coord_diff": onnx_diff,
            "onnx_pipeline_ips": count / onnx_piped.loop_s, "onnx_pipeline_vs_onnx": onnx_s / onnx_piped.loop_s,
            "onnx_pipeline_fixed_s": onnx_piped.fixed_s, "onnx_mpjpe_change_vs_pytorch": onnx_piped.mpjpe - mpjpe,
            "onnx_provider": settings.onnx_provider.value, "onnx_export_cached": bool((onnx_info.get("cache") or {}).get("hit")),
            "onnx_source_verified": onnx_info.get("source_verified"), "onnx_pipeline_vs_eager": eager_s / onnx_piped.loop_s,
            "onnx_pipeline_images_cross_checked": onnx_piped.images_cross_checked,
        }  # fmt: skip
    else:
        onnx = {key: None for key in ONNX_KEYS} | {"onnx_note": onnx_note}
    return {
        "variant": settings.variant.name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "batch_size": batch_size,
        "num_images": count,
        "eager_fp32_ips": count / eager_s,
        "inference_ips": count / inference_s,
        "pipeline_ips": count / piped["c"].loop_s,
        "pipeline_fixed_s": piped["c"].fixed_s,
        "data_ips": count / data_s,
        "inference_vs_eager": eager_s / inference_s,
        "pipeline_vs_inference": inference_s / piped["c"].loop_s,
        "precision": settings.trainer.precision,
        "tf32": settings.trainer.tf32,
        "max_coord_diff_vs_eager": coord_diff,
        "mpjpe": mpjpe,
        "mpjpe_change_vs_fp32": mpjpe - exact_mpjpe if reduced_precision else 0.0,
        **onnx,
    }


# The JSON line's ONNX Runtime figures, null (with ``onnx_note``) when ONNX Runtime could not be measured.
ONNX_KEYS = ("onnx_ips", "onnx_vs_inference", "onnx_max_coord_diff", "onnx_pipeline_ips", "onnx_pipeline_vs_onnx",
             "onnx_pipeline_fixed_s", "onnx_mpjpe_change_vs_pytorch", "onnx_pipeline_vs_eager",
             "onnx_pipeline_images_cross_checked")  # fmt: skip


def _onnx_engine(plan: RunPlan, datamodule: Any) -> tuple[PoseEvaluator | None, str | None]:
    """The ONNX Runtime engine built as ``backend=onnxruntime`` builds it (the checkpoint's cached export,
    proven against it), or None and the reason: (e) and (f) are optional, (a) to (d) stand without them."""
    try:
        print("bench: exporting the checkpoint into the ONNX cache (or finding it there)", file=sys.stderr, flush=True)
        return build_evaluator(plan.with_cached_export(), check_crops=lambda arch: check_crops_from(datamodule)), None
    except BackendError as exc:
        return None, one_line(exc)


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
    print(f"{'(c) whole pipeline, crop cache warm':<44}{result['pipeline_ips']:>10.2f}   {result['pipeline_vs_inference']:.2f}x (b); "
          f"plus {result['pipeline_fixed_s']:.2f} s a run")  # fmt: skip
    print(f"{'(d) data path alone, crop store warm':<44}{result['data_ips']:>10.2f}")
    if result["onnx_ips"] is not None:
        print(f"{'(e) ONNX Runtime (' + str(result['onnx_provider']) + '), same crops':<44}{result['onnx_ips']:>10.2f}   "
              f"{result['onnx_vs_inference']:.2f}x (b); max |coords - (b)| {result['onnx_max_coord_diff']:.1e}")  # fmt: skip
        print(f"{'(f) whole pipeline, ONNX Runtime':<44}{result['onnx_pipeline_ips']:>10.2f}   "
              f"{result['onnx_pipeline_vs_onnx']:.2f}x (e), {result['onnx_pipeline_vs_eager']:.2f}x (a); "
              f"plus {result['onnx_pipeline_fixed_s']:.2f} s a run; MPJPE change vs (c) {result['onnx_mpjpe_change_vs_pytorch']:+.1e} mm")  # fmt: skip
        print(f"{'':<44}{'':>10}   {result['onnx_pipeline_images_cross_checked']} of {result['num_images']} images also run "
              "through the checkpoint's PyTorch network (the cross-check, included in (f))")  # fmt: skip
    else:
        print(f"(e), (f) ONNX Runtime: not measured ({result['onnx_note']})")
    print(f"heatmap coordinates vs (a): max |diff| {result['max_coord_diff_vs_eager']:.2e}; MPJPE {result['mpjpe']:.2f} mm "
          f"({result['precision']}, change vs fp32 {result['mpjpe_change_vs_fp32']:+.3f} mm)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
