"""``convnextpose-eval deploy [evaluation overrides] [hydra.run.dir=OUT]``: every deployed format, side by side.

Builds each format of the checkpoint (PyTorch float32, the reference; ONNX float32, float16 and static
int8; TFLite float32 and int8; OpenVINO float32 and int8; on a GPU ONNX Runtime CUDA and TensorRT),
checks each against PyTorch on held-out test crops, scores all of them on the same test images with
the evaluation's own flip test, back-projection and metrics, and times them side by side in this one
process. int8 formats are calibrated on crops of the protocol's training subjects only. A format whose
package is missing is a ``skipped`` row naming the ``pip install`` that adds it; one whose conversion
or runtime fails is a ``failed`` row saying why; the others still run. ``deploy.files=[A.onnx,B.tflite]``
scores your own files beside them. Writes ``OUT/deploy_results.json``, ``OUT/DEPLOY_REPORT.md`` and
``OUT/deploy_tradeoff.png``; ``-m variant=XS,L`` writes one folder per variant under
``hydra.sweep.dir`` and a summary (``DEPLOY_SUMMARY.md``, ``deploy_summary.json``) there. How to read
the table: docs/deployment.md.
"""

from __future__ import annotations

import itertools
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ..common.errors import ConfigError, EvalError, one_line
from ..config.checks import checked_config, quote_home_paths
from ..config.compose import compose_config, composition_error, overrides_of
from ..config.help import HELP_FLAGS, command_help
from ..deploy.matrix import Matrix
from ..deploy.report import REPORT_FILE, RESULTS_FILE, write_matrix, write_summary
from ..run.evaluation import quiet_lightning

_SWEEP_FLAGS = ("-m", "--multirun")
_FOLDERS = ("hydra.run.dir=", "hydra.sweep.dir=")


def _jobs(overrides: list[str]) -> list[list[str]]:
    """Each job's overrides: the cartesian product of the comma lists (``variant=XS,L``), in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [[f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
               for o in parsed]  # fmt: skip
    return [list(job) for job in itertools.product(*choices)]


def _split(argv: list[str]) -> tuple[list[str], bool, dict[str, Path]]:
    """The evaluation overrides, whether ``-m`` was given, and the output folders named by ``hydra.run.dir`` / ``hydra.sweep.dir``."""
    sweep = any(arg in _SWEEP_FLAGS for arg in argv)
    folders: dict[str, Path] = {}
    overrides = []
    for arg in argv:
        if arg in _SWEEP_FLAGS:
            continue
        if arg.startswith(_FOLDERS):
            key, value = arg.split("=", 1)
            folders[key] = Path(value).expanduser()
        elif arg.startswith(("hydra.", "hydra/")):
            raise ConfigError(f"{arg}: the deploy command takes hydra.run.dir=OUT (and hydra.sweep.dir=DIR with -m) only")
        else:
            overrides.append(arg)
    return overrides_of(overrides), sweep, folders


def _run_one(overrides: list[str], folder: Path | None) -> tuple[dict[str, Any], Path]:
    settings = checked_config(compose_config(overrides))
    variant = settings.variant.name
    folder = folder or settings.paths.output_root / "deploy" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{variant}"
    record = Matrix(settings, folder).run()
    write_matrix(folder, record)
    return record, folder


def _print(record: dict[str, Any], folder: Path) -> None:
    if record.get("label"):
        print(record["label"])
    print(f"ConvNeXtPose-{record['variant']}: {record['num_samples']} test images, reference {record['reference']}")
    for row in record["formats"]:
        if row["status"] == "ok":
            diff = row.get("difference") or {}
            change = diff.get("mpjpe")
            text = f"{change['value']:+.2f} mm [{change['ci95'][0]:+.2f}, {change['ci95'][1]:+.2f}]" if change else "reference"
            print(f"  {row['format']:<24} MPJPE {row['metrics']['mpjpe']:8.2f} mm  {text:<30} p50 {row['latency_ms']['p50']:7.1f} ms  "
                  f"{row['throughput_ips']:7.1f} img/s  {row['size_bytes'] / 1e6:6.1f} MB")  # fmt: skip
        else:
            print(f"  {row['format']:<24} {row['status']}: {row['reason']}")
    print(f"results: {folder / RESULTS_FILE} (report {folder / REPORT_FILE})")


def main(argv: list[str] | None = None) -> int:
    """Compose, build, score, time, write; a bad input is one ``error:`` line and exit status 2, nothing written."""
    quiet_lightning()
    args = quote_home_paths(list(sys.argv[1:] if argv is None else argv))
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if set(HELP_FLAGS) & set(args):
        print(command_help(__doc__ or "", [a for a in args if not a.startswith(_FOLDERS)]))
        return 0
    try:
        overrides, sweep, folders = _split(args)
        problem = composition_error(overrides)
        if problem:
            raise ConfigError(problem)
        jobs = _jobs(overrides)
        if len(jobs) > 1 and not sweep:
            raise ConfigError(f"several values make a sweep, which needs -m: `convnextpose-eval deploy -m {' '.join(args)}`")
        if not sweep:
            record, folder = _run_one(jobs[0], folders.get("hydra.run.dir"))
            _print(record, folder)
            return 0
        root = folders.get("hydra.sweep.dir") or folders.get("hydra.run.dir")
        if root is None:
            root = checked_config(compose_config(jobs[0])).paths.output_root / "deploy" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    except (EvalError, HydraException, OmegaConfBaseException) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    done: list[tuple[str, Path, dict[str, Any] | None, str | None]] = []
    for number, job in enumerate(jobs):
        variant = next((o.split("=", 1)[1] for o in job if o.startswith("variant=")), "auto")
        folder = root / f"{number}_{variant}"
        try:
            record, folder = _run_one(job, folder)
            _print(record, folder)
            done.append((variant, folder, record, None))
        except (EvalError, HydraException, OmegaConfBaseException) as exc:
            print(f"error: {variant}: {one_line(exc)}", file=sys.stderr)
            done.append((variant, folder, None, one_line(exc)))
    write_summary(root, done)
    print(f"summary: {root / 'DEPLOY_SUMMARY.md'}")
    return 0 if all(record for _, _, record, _ in done) else 2


if __name__ == "__main__":
    sys.exit(main())
