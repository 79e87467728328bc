"""``python -m convnextpose_eval.export [run_eval.py overrides] [export.path=FILE|DIR] [export.opset=N]``.

Writes the network an evaluation would run as an ONNX file with a dynamic batch axis. The checkpoint
is found, read and checked by the evaluation's own code (``build_evaluator``), so a file this command
writes holds exactly the weights ``run_eval.py`` would score. Before anything is written, ONNX Runtime
runs real test crops (and their mirrors, as the flip test does) through the exported graph, and the
file is refused if its coordinates differ from PyTorch's by more than the tolerance. The crops come
from ``data.root`` when one is given (``experiment=demo`` included), otherwise from the bundled
synthetic sample, generated if missing.

The default file is ``<paths.output_root>/onnx/ConvNeXtPose_<V>.onnx``; ``export.path=FILE.onnx``
writes that file, and any other ``export.path=DIR`` writes ``ConvNeXtPose_<V>.onnx`` inside DIR, which is the folder layout ``run_eval.py -m backend=onnxruntime onnx_path=DIR``
reads. The last line printed is one JSON object.
"""

from __future__ import annotations

import gc
import json
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf, open_dict

from ..backends.onnx_checks import onnx_file_name, require_onnx_packages
from ..backends.onnx_export import ExportReport, export_onnx
from ..backends.pytorch import PyTorchForward
from ..common.errors import ConfigError, EvalError, command, one_line
from ..config.checks import checked_config, quote_home_paths
from ..config.compose import compose_config, composition_error, variant_table
from ..config.help import HELP_FLAGS, command_help
from ..config.schema import EvalConfig, Strategy
from ..model.evaluator import PoseEvaluator
from ..run.evaluation import build_datamodule, build_evaluator, quiet_lightning
from ..run.failures import RunInterrupted
from ..run.plan import PYTORCH, plan_run
from ..sample.generator import ensure_sample

# Test crops run through both networks before the file is written, each also mirrored.
CHECK_IMAGES = 8


def export_settings(overrides: list[str]) -> tuple[EvalConfig, bool]:
    """The checked configuration, and whether the check crops come from the bundled sample (no data.root given)."""
    cfg = compose_config(overrides)
    from_sample = OmegaConf.is_missing(cfg.data, "root")
    if from_sample:
        ensure_sample(Path(str(cfg.paths.sample_dir)).expanduser(), variants=variant_table(cfg))
        with open_dict(cfg):
            cfg.data.root = "${paths.sample_dir}"
    settings = checked_config(cfg)
    if settings.trainer.strategy is Strategy.ddp:
        raise ConfigError("trainer=ddp: the export runs in one process; use trainer=cpu (or trainer=gpu)")
    return settings, from_sample


def check_crops(settings: EvalConfig, module: PoseEvaluator) -> torch.Tensor:
    """Normalized crops spread over the test set, followed by their mirror images: (2 x N, 3, S, S) float32."""
    assert module.arch is not None
    datamodule = build_datamodule(settings, module.arch.input_size)
    dataset = datamodule.dataset
    picks = np.unique(np.linspace(0, len(dataset) - 1, num=min(CHECK_IMAGES, len(dataset))).round().astype(int))
    images = torch.stack([dataset[int(i)]["image"] for i in picks])
    assert module.forward_pass is not None
    normalized = module.forward_pass.normalize(images).float()
    return torch.cat([normalized, normalized.flip(3)]).contiguous().cpu()


def target_path(settings: EvalConfig, variant: str) -> Path:
    """``export.path`` when it names a ``.onnx`` file; inside it when it is a folder (or a new name without
    ``.onnx``, created as a folder); the default under the output root when null."""
    name = onnx_file_name(variant)
    path = settings.export.path
    if path is None:
        return settings.paths.output_root / "onnx" / name
    if path.suffix.lower() == ".onnx" and not path.is_dir():
        return path
    if path.exists() and not path.is_dir():
        raise ConfigError(f"export.path={path}: exists and is not a folder or a .onnx file; name a FILE.onnx or a folder")
    return path / name


def run_export(settings: EvalConfig) -> tuple[ExportReport, dict[str, Any]]:
    """Load and check the checkpoint, export its network, verify it with ONNX Runtime, write the file."""
    require_onnx_packages()
    module = build_evaluator(plan_run(settings, engine=PYTORCH, purpose="the export reads a PyTorch checkpoint; drop backend and onnx_path"))
    assert isinstance(module.forward_pass, PyTorchForward) and module.arch is not None
    variant = settings.variant.name if settings.variant.name != "auto" else module.detected_variant or "auto"
    path = target_path(settings, variant)
    checkpoint = module.checkpoint_info
    report = export_onnx(
        module.forward_pass.network,
        path,
        opset=settings.export.opset,
        check_inputs=check_crops(settings, module),
        source={"file": Path(checkpoint["path"]).name, "sha256": checkpoint["sha256"]},
        overwrite=settings.export.overwrite,
    )
    return report, {"variant": variant, "checkpoint": checkpoint["path"], "checkpoint_sha256": checkpoint["sha256"],
                    "data_root": str(settings.data.root)}  # fmt: skip


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`RunInterrupted` while the export runs, so the atomic write removes its
    temporary file on the way out and ``main`` says so in one line; the previous handlers come back after."""

    def interrupt(signum: int, frame: object) -> None:
        raise RunInterrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Export, print what was written; any failure is one ``error:`` line and exit status 2, with no file written;
    Ctrl-C or SIGTERM is one line and exit 130 or 143, with no file (temporary or final) written."""
    quiet_lightning()
    overrides = quote_home_paths(list(sys.argv[1:] if argv is None else argv))
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
        with _interruptible():
            settings, from_sample = export_settings(overrides)
            report, source = run_export(settings)
    except (EvalError, HydraException, OmegaConfBaseException) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (RunInterrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, RunInterrupted) else int(signal.SIGINT)
        print(f"error: interrupted by {signal.Signals(signum).name}; no file written", file=sys.stderr)
        gc.freeze()  # no final full garbage collection of a large heap: the process ends now
        return 128 + signum
    crops = "the bundled synthetic sample" if from_sample else source["data_root"]
    size_mb = report.path.stat().st_size / 1e6
    print(f"wrote {report.path} (ConvNeXtPose-{source['variant']}, ONNX opset {report.opset}, {size_mb:.1f} MB, dynamic batch)")
    print(f"  from        {source['checkpoint']} (sha256 {source['checkpoint_sha256'][:16]}...)")
    print(f"  checked     {report.check_batch_sizes[0] // 2} test crops of {crops} and their mirrors, as one batch and one alone: "
          f"max |ONNX Runtime - PyTorch| = {report.max_abs_diff:.2e} heatmap units (tolerance {report.tolerance:g})")  # fmt: skip
    print(f"  sha256      {report.sha256}")
    evaluate = shlex.join([f"variant={source['variant']}", "backend=onnxruntime", f"onnx_path={report.path}",
                           f"ckpt_path={source['checkpoint']}", f"data.root={source['data_root']}"])  # fmt: skip
    print(f"  evaluate    `{command()} {evaluate}`")
    print(json.dumps({**report.to_dict(), **source}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
