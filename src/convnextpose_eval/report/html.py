"""Self-contained HTML pages (``report.html``): one file holding its data, its script and its styles.

A page is a fixed shell, the package's own ``assets/report.css`` and ``assets/report.js`` copied in, and one
JSON block the script draws everything from (tables, charts, the 3D view). Nothing is fetched when the page
is opened: images are ``data:`` URIs, so the file opens the same from a laptop, a cluster share or an
e-mail attachment. What each kind of page shows, and the bound on its size: docs/report.md.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..common.atomic import atomic_write_bytes
from ..common.errors import EvalError, one_line
from ..common.human36m import ACTION_NAMES, EVAL_JOINT_NAMES, SKELETON
from ..results.files import REPORT_HTML
from ..results.paper import (
    FALLBACK_BAND,
    HEADLINE_METRIC,
    ORACLE_WARNING,
    PAPER_KEY,
    SYNTHETIC_WARNING,
)
from ..results.worst_cases import GROUND_TRUTH_COLOUR, PREDICTION_COLOUR, WorstCase
from .compare import Run, group_intervals, most_changed_images
from .entries import headline, labels_for, paper_figure
from .labels import METRIC_LABELS

if TYPE_CHECKING:  # the writer brings Lightning and torch, which a comparison's page does not need
    from ..results.writer import ExtraFiles

# The deploy command's table of formats (docs/report.md; its writer is the deploy command's).
DEPLOY_JSON = "deploy_results.json"

PAGE_KINDS = ("run", "sweep", "compare", "deploy")
# The size bound of docs/report.md: the shell and assets, plus at most this much per worst frame (its crop
# as JPEG, re-encoded smaller until it fits, and its figures) and per scored test image.
BASE_BYTES_BOUND = 300_000
FRAME_BYTES_BOUND = 50_000
IMAGE_BYTES_BOUND = 40
# A crop's JPEG bytes; base64 makes them a third larger in the page.
_CROP_BYTES_BOUND = 36_000
_JPEG_QUALITIES = (85, 70, 55, 40, 25)
# Every figure a per-image entry of predictions.json carries (results.json's metrics, image by image).
IMAGE_METRICS = ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")
ALL_METRIC_LABELS = {**METRIC_LABELS, "n_mpjpe": "N-MPJPE", "pck3d_150": "3DPCK@150mm (%)", "auc3d": "AUC (%)"}
_BONES = [[a, b] for a, b in SKELETON if a < len(EVAL_JOINT_NAMES) and b < len(EVAL_JOINT_NAMES)]


def _asset(name: str) -> str:
    return (files("convnextpose_eval.report") / "assets" / name).read_text(encoding="utf-8")


def _plain(value: Any) -> Any:
    """JSON-ready: NumPy values as Python ones, NaN and infinities as null (JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def page(kind: str, title: str, data: Mapping[str, Any]) -> bytes:
    """The page's bytes: the shell, the assets and ``data`` as JSON (``</`` escaped so no string can close the script)."""
    if kind not in PAGE_KINDS:
        raise ValueError(f"page kind must be one of {PAGE_KINDS}, not {kind!r}")
    payload = json.dumps(_plain({"kind": kind, "title": title, **data}), allow_nan=False, separators=(",", ":"))
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\!--")
    text = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        # No network at view time, by the page's own policy: anything but inline code and data: images is refused.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
        f"<meta name=\"generator\" content=\"convnextpose-eval\">\n<title>{html.escape(title)}</title>\n"
        f"<style>\n{_asset('report.css')}\n</style>\n</head>\n<body>\n"
        f"<noscript><p class=\"marker\">This report draws its tables and charts with JavaScript; turn it on to read it.</p></noscript>\n"
        f"<main id=\"report\" data-kind=\"{kind}\"></main>\n"
        f"<script type=\"application/json\" id=\"report-data\">{payload}</script>\n"
        f"<script>\n{_asset('report.js')}\n</script>\n</body>\n</html>\n"
    )
    return text.encode("utf-8")


def size_bound(num_frames: int, num_images: int) -> int:
    """The most bytes a run page with ``num_frames`` worst frames over ``num_images`` test images may take."""
    return BASE_BYTES_BOUND + FRAME_BYTES_BOUND * num_frames + IMAGE_BYTES_BOUND * num_images


def jpeg_data_uri(crop: np.ndarray) -> str:
    """An RGB crop as a ``data:image/jpeg`` URI of at most 48 kB (lower quality, then half the size, until it fits)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR)
    for quality in _JPEG_QUALITIES:
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(encoded) <= _CROP_BYTES_BOUND:
            break
    else:
        side = max(32, bgr.shape[0] // 2)
        ok, encoded = cv2.imencode(".jpg", cv2.resize(bgr, (side, side)), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITIES[-1]])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


# --------------------------------------------------------------------------- what every page says at the top


def markers(results: Mapping[str, Any]) -> list[str]:
    """The warnings that must stand above anything a run shows."""
    return [text for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)) if results.get(key)]


def weights_record(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """The files the figures come from, each with its sha256 and what this run proved about it."""
    records = []
    inference = results.get("inference") or {}
    onnx = inference.get("onnx")
    checkpoint = results.get("checkpoint")
    if onnx:
        verification = onnx.get("verification") or {}
        if onnx.get("source_verified"):
            proof = (f"outputs compared with checkpoint {onnx.get('source_checkpoint_file') or '?'} "
                     f"(sha256 {onnx.get('source_checkpoint_sha256') or verification.get('checkpoint_sha256') or '?'}) on "
                     f"{verification.get('images_checked', '?')} of the scored test images ({verification.get('batches_checked', '?')} "
                     f"of {verification.get('batches_scored', '?')} batches, drawn with seed {verification.get('seed', '?')}): "
                     f"largest difference {_short(verification.get('max_abs_diff'))} within tolerance "
                     f"{_short(verification.get('tolerance'))}")  # fmt: skip
        else:
            claim = onnx.get("source_checkpoint_file")
            proof = (f"NOT checked against a checkpoint{f' (the file says it was exported from {claim})' if claim else ''}; "
                     "the figures are this file's, whatever it was made from")  # fmt: skip
        records.append({"role": f"ONNX model run by ONNX Runtime {onnx.get('onnxruntime_version', '')} ({onnx.get('provider', '?')})",
                        "file": str(onnx.get("path", "?")), "sha256": str(onnx.get("sha256", "?")), "proof": proof})  # fmt: skip
    if checkpoint:
        detected = checkpoint.get("detected_variant")
        epoch = checkpoint.get("epoch")
        proof = (f"loaded with torch.load(weights_only=True); {checkpoint.get('key_style', '?')} key names; "
                 + (f"its tensors match the released {detected} architecture" if detected else "its tensors match no released architecture")
                 + (f"; epoch {epoch}" if epoch is not None else "")
                 + (f"; {checkpoint['dtype_note']}" if checkpoint.get("dtype_note") else ""))  # fmt: skip
        role = "checkpoint the ONNX file was checked against" if onnx and onnx.get("source_verified") else "checkpoint"
        records.append({"role": role, "file": str(checkpoint.get("path", "?")), "sha256": str(checkpoint.get("sha256", "?")), "proof": proof})
    if not records:
        records.append({"role": "no weights", "file": "-", "sha256": "-",
                        "proof": "no network ran: predictions come from the ground truth" if results.get("oracle") else "no checkpoint recorded"})  # fmt: skip
    return records


def _short(value: Any) -> str:
    return "?" if value is None else f"{float(value):.3g}"


def run_facts(results: Mapping[str, Any]) -> list[list[str]]:
    """What ran, as (name, value) lines: variant, test set, boxes, flip test, engine, precision, when."""
    inference = results.get("inference") or {}
    model = results.get("model") or {}
    throughput = results.get("throughput") or {}
    dropped = results.get("dropped_sequences") or []
    facts = [
        ["network", f"ConvNeXtPose-{results.get('variant')} ({_millions(model.get('params'))} M parameters, {model.get('gflops', '?')} GFLOPs)"],
        ["test set", f"{'synthetic sample' if results.get('synthetic') else 'Human3.6M'}, protocol {results.get('protocol')}, "
                     f"{results.get('num_samples')} images, {'ground-truth boxes' if results.get('use_gt_info', True) else 'RootNet boxes'}"
                     + (f"; left out: {', '.join(dropped)}" if dropped else "")],
        ["flip test", "on" if results.get("flip_test") else "off"],
        ["engine", f"{inference.get('backend', 'pytorch')}, {inference.get('precision', '?')}, TF32 {'on' if inference.get('tf32') else 'off'}"],
        ["speed", f"{throughput['images_per_s']:.1f} images/s on {throughput.get('device', '?')} x{throughput.get('devices', 1)}"
                  if throughput.get("images_per_s") else "-"],
        ["data", str(results.get("data_root", "-"))],
        ["written", str(results.get("created", "-"))],
    ]  # fmt: skip
    return facts


def _millions(value: Any) -> str:
    return "?" if value is None else f"{value / 1e6:.2f}"


def headline_rows(results: Mapping[str, Any]) -> dict[str, Any]:
    """Every overall figure beside the paper's where the paper gives one, and the band of the protocol's figure."""
    metrics = results.get("metrics") or {}
    paper = results.get("paper") or {}
    comparison = results.get("comparison")
    protocol = results.get("protocol")
    rows = []
    for name, label in ALL_METRIC_LABELS.items():
        figure = None
        for paper_protocol, metric in HEADLINE_METRIC.items():
            if metric == name and paper.get(PAPER_KEY[paper_protocol]) is not None and paper_protocol == protocol:
                figure = paper[PAPER_KEY[paper_protocol]]
        ours = metrics.get(name)
        rows.append({"metric": label, "key": name, "ours": ours, "action_average": (results.get("action_average") or {}).get(name),
                     "paper": figure, "diff": comparison["diff"] if comparison and comparison.get("metric") == name else None,
                     "band": comparison["band"] if comparison and comparison.get("metric") == name else None})  # fmt: skip
    headline_metric = HEADLINE_METRIC.get(protocol) if isinstance(protocol, int) else None
    model = results.get("model") or {}
    return {"rows": rows, "headline_metric": headline_metric, "comparison": comparison, "protocol": protocol,
            "params_m": model["params"] / 1e6 if model.get("params") is not None else None, "gflops": model.get("gflops"),
            "paper_params_m": paper.get("params_m"), "paper_gflops": paper.get("gflops")}  # fmt: skip


def band_legend(bands: Sequence[tuple[float, str]] | None) -> str:
    """``< 1 mm excellent, < 2 mm very good, ...; otherwise review``."""
    if not bands:
        return ""
    ordered = sorted((float(limit), str(name)) for limit, name in bands)
    return ", ".join(f"< {limit:g} mm {name}" for limit, name in ordered) + f", otherwise {FALLBACK_BAND}"


# --------------------------------------------------------------------------- the run's page


def _group_rows(block: Mapping[str, Mapping[str, Any]], with_count: bool = True) -> list[dict[str, Any]]:
    rows = []
    for name, figures in block.items():
        row = {"name": name, **{key: figures.get(key) for key in IMAGE_METRICS if key in figures}}
        if with_count:
            row["num_samples"] = figures.get("num_samples")
        rows.append(row)
    return rows


def frame_record(case: WorstCase, entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """One worst frame: its crop, both skeletons in crop pixels and in mm, and its figures from predictions.json."""
    entry = entry or {}
    return {
        "image_id": case.image_id,
        "action": entry.get("action", case.action),
        "subject": entry.get("subject"),
        "figures": {key: entry.get(key) for key in IMAGE_METRICS if key in entry} or {"mpjpe": case.error_mm},
        "joint_mpjpe": entry.get("joint_mpjpe"),
        "pred_cam": entry.get("joint_cam"),
        "gt_cam": None if case.gt_cam is None else np.round(np.asarray(case.gt_cam, dtype=np.float64), 2),
        "pred_xy": np.round(np.asarray(case.pred_xy, dtype=np.float64), 2),
        "gt_xy": np.round(np.asarray(case.gt_xy, dtype=np.float64), 2),
        "bbox": entry.get("bbox"),
        "root_cam": entry.get("root_cam"),
        "crop_size": int(case.crop.shape[0]),
        "crop": jpeg_data_uri(case.crop),
    }


def _rounded(values: Sequence[Any], digits: int = 2) -> list[float | None]:
    return [None if v is None or not math.isfinite(float(v)) else round(float(v), digits) for v in values]


def run_page(results: Mapping[str, Any], predictions: Sequence[Mapping[str, Any]], worst: Sequence[WorstCase],
             bands: Sequence[tuple[float, str]] | None = None) -> bytes:  # fmt: skip
    """A run's report.html from what the run writes: results.json's object, predictions.json's entries and the
    worst frames (worst first) with their crops."""
    by_id = {entry.get("image_id"): entry for entry in predictions}
    title = f"ConvNeXtPose-{results.get('variant')} on {'the synthetic sample' if results.get('synthetic') else 'Human3.6M'}, protocol {results.get('protocol')}"
    data = {
        "markers": markers(results),
        "weights": weights_record(results),
        "facts": run_facts(results),
        "headline": headline_rows(results),
        "bands": band_legend(bands),
        "metric_labels": ALL_METRIC_LABELS,
        "per_action": _group_rows(results.get("per_action") or {}),
        "per_subject": [row for row in _group_rows(results.get("per_subject") or {}) if row.get("num_samples")],
        "per_joint": [{"name": name, "mpjpe": block.get("mpjpe")} for name, block in (results.get("per_joint") or {}).items()],
        "errors": {key: _rounded([entry.get(key) for entry in predictions]) for key in ("mpjpe", "pa_mpjpe")},
        "frames": [frame_record(case, by_id.get(case.image_id)) for case in worst],
        "joint_names": list(EVAL_JOINT_NAMES),
        "bones": _BONES,
        "colours": {"truth": GROUND_TRUTH_COLOUR, "prediction": PREDICTION_COLOUR},
    }
    return page("run", title, data)


class RunPageFiles:
    """The ``extra_files`` a run's writer calls (results/writer.py): ``{"report.html": the run's page}``. A class,
    not a closure, so the writer pickles into the processes DDP spawns."""

    def __init__(self, bands: Sequence[tuple[float, str]] | None) -> None:
        self.bands = bands

    def __call__(self, results: dict[str, Any], predictions: list[dict[str, Any]], worst: Sequence[WorstCase]) -> dict[str, bytes]:
        return {REPORT_HTML: run_page(results, predictions, worst, self.bands)}


def run_page_files(bands: Sequence[tuple[float, str]] | None) -> ExtraFiles:
    """The run's page as the writer's extra file (see :class:`RunPageFiles`)."""
    return RunPageFiles(bands)


# --------------------------------------------------------------------------- a sweep's page


def sweep_page(aggregate: Mapping[str, Any], sweep_dir: Path) -> bytes:
    """The variants of a sweep side by side (benchmark_results.json's object), each linked to its own page."""
    labels = labels_for(aggregate["entries"])
    rows = []
    for label, entry in zip(labels, aggregate["entries"]):
        row: dict[str, Any] = {"label": label, "variant": entry.get("variant"), "status": entry["status"], "job_dir": entry["job_dir"],
                               "protocol": entry.get("protocol"), "error": entry.get("error"), "paper": paper_figure(entry),
                               "paper_params_m": (entry.get("paper") or {}).get("params_m"),
                               "paper_gflops": (entry.get("paper") or {}).get("gflops")}  # fmt: skip
        page_path = Path(sweep_dir) / entry["job_dir"] / REPORT_HTML
        row["link"] = f"{entry['job_dir']}/{REPORT_HTML}" if page_path.is_file() else None
        if entry["status"] == "ok":
            results = entry["results"]
            comparison = entry.get("comparison")
            model, speed = results.get("model") or {}, results.get("throughput") or {}
            row.update(
                headline_metric=HEADLINE_METRIC[entry["protocol"]], markers=markers(results),
                num_samples=results.get("num_samples"), metrics=results.get("metrics"),
                diff=comparison["diff"] if comparison else None, band=comparison["band"] if comparison else None,
                params_m=model["params"] / 1e6 if model.get("params") is not None else None, gflops=model.get("gflops"),
                images_per_s=speed.get("images_per_s"), device=speed.get("device"),
                backend=(results.get("inference") or {}).get("backend", "pytorch"),
                weights=weights_record(results),
                per_action={action: headline(entry, block) for action, block in (results.get("per_action") or {}).items()},
                per_joint={joint: block.get("mpjpe") for joint, block in (results.get("per_joint") or {}).items()},
            )  # fmt: skip
        rows.append(row)
    flags = [text for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)) if aggregate.get(key)]
    data = {"markers": flags, "sweep_dir": str(sweep_dir), "protocol": aggregate.get("protocol"), "entries": rows,
            "metric_labels": ALL_METRIC_LABELS, "actions": list(ACTION_NAMES), "joint_names": list(EVAL_JOINT_NAMES)}  # fmt: skip
    return page("sweep", "ConvNeXtPose sweep: the variants side by side", data)


# --------------------------------------------------------------------------- a comparison's page


def compare_page(pairs: Sequence[tuple[Run, Run, dict[str, Any]]], resamples: int, seed: int, frames: int = 24) -> bytes:
    """B - A for each (A, B, compare_runs' object): every figure, per action and per joint with paired intervals,
    and the images whose error changed most, with both runs' 3D predictions."""
    sections = []
    for a, b, comparison in pairs:
        intervals = group_intervals(a, b, resamples, seed)
        changed = []
        for image_id in most_changed_images(a, b, frames):
            left, right = a.images[image_id], b.images[image_id]
            changed.append({"image_id": image_id, "action": left.get("action"), "subject": left.get("subject"),
                            "a": {key: left.get(key) for key in IMAGE_METRICS if key in left},
                            "b": {key: right.get(key) for key in IMAGE_METRICS if key in right},
                            "a_joint_mpjpe": left.get("joint_mpjpe"), "b_joint_mpjpe": right.get("joint_mpjpe"),
                            "a_cam": left.get("joint_cam"), "b_cam": right.get("joint_cam")})  # fmt: skip
        sections.append({
            "a": {"folder": str(a.folder), "label": a.label, "markers": markers(a.results), "weights": weights_record(a.results)},
            "b": {"folder": str(b.folder), "label": b.label, "markers": markers(b.results), "weights": weights_record(b.results)},
            "comparison": comparison,
            "per_action": [{"name": name, **entry, "ci95": intervals["per_action"].get(name)} for name, entry in comparison["per_action"].items()],
            "per_joint": [{"name": name, **entry, "ci95": intervals["per_joint"].get(name)} for name, entry in comparison["per_joint"].items()],
            "frames": changed,
        })  # fmt: skip
    flags = sorted({text for a, b, _ in pairs for text in (*markers(a.results), *markers(b.results))})
    data = {"markers": flags, "sections": sections, "metric_labels": ALL_METRIC_LABELS, "joint_names": list(EVAL_JOINT_NAMES),
            "bones": _BONES, "colours": {"a": "#1f77b4", "b": "#ff7f0e"}}  # fmt: skip
    return page("compare", "ConvNeXtPose runs compared image by image", data)


# --------------------------------------------------------------------------- a deployment matrix's page


def deploy_page(deploy_results: Mapping[str, Any], folder: Path) -> bytes:
    """Formats side by side (deploy_results.json's object): accuracy against latency, sizes, paired differences."""
    formats = [dict(entry) for entry in deploy_results.get("formats") or []]
    data = {"markers": markers(deploy_results), "folder": str(folder), "reference": deploy_results.get("reference"),
            "num_samples": deploy_results.get("num_samples"), "variant": deploy_results.get("variant"), "formats": formats,
            "metric_labels": ALL_METRIC_LABELS}  # fmt: skip
    return page("deploy", f"ConvNeXtPose{'-' + str(deploy_results['variant']) if deploy_results.get('variant') else ''}: deployed formats side by side", data)


def write_deploy_page(folder: Path) -> Path:
    """Read ``folder/deploy_results.json`` and write ``folder/report.html`` beside it (atomically); its path."""
    source = Path(folder) / DEPLOY_JSON
    try:
        content = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"{source}: no such file; give a folder the deploy command wrote") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EvalError(f"{source}: not readable JSON ({one_line(exc)})") from None
    if not isinstance(content, dict) or not isinstance(content.get("formats"), list):
        raise EvalError(f"{source}: expected an object with a list of formats")
    target = Path(folder) / REPORT_HTML
    atomic_write_bytes(target, deploy_page(content, Path(folder)))
    return target
