"""The terminal summary of one run: what ran, the metrics against the paper, then the 15 actions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..common.human36m import ACTION_NAMES
from ..results.paper import ORACLE_WARNING, SYNTHETIC_WARNING
from .labels import METRIC_LABELS


def num(value: Any, digits: int = 2, empty: str = "-") -> str:
    return empty if value is None else f"{float(value):.{digits}f}"


def warning_flags(results: dict[str, Any]) -> list[str]:
    """The loud warnings a set of results must carry wherever it is shown."""
    return [text for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)) if results.get(key)]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text columns: first left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([str(first).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(rest, widths[1:])])

    return [line(header), "  ".join("-" * w for w in widths)] + [line(row) for row in rows]


def format_summary(results: dict[str, Any]) -> str:
    """A terminal table of one run: what ran, the three metrics against the paper, then the 15 actions."""
    checkpoint = results.get("checkpoint") or {}
    protocol = results.get("protocol")
    flip = {True: "on", False: "off"}.get(results.get("flip_test"), "?")
    banners = [f"!!!!!!!! {text} !!!!!!!!" for text in warning_flags(results)]
    lines = list(banners)
    onnx = (results.get("inference") or {}).get("onnx")
    if onnx and onnx.get("source_verified"):
        source = onnx.get("source_checkpoint_file") or "?"
        weights = f"ONNX Runtime ({onnx.get('provider', '?')}): {Path(onnx.get('path', '?')).name}, checked against {source}"
    elif onnx:
        source = onnx.get("source_checkpoint_file")
        claim = f"says it was exported from {source}, " if source else ""
        weights = f"ONNX Runtime ({onnx.get('provider', '?')}): {Path(onnx.get('path', '?')).name}, {claim}not checked against a checkpoint"
    else:
        weights = f"checkpoint epoch {checkpoint.get('epoch', '?')}"
    lines.append(
        f"ConvNeXtPose-{results.get('variant', '?')} | protocol {protocol} | "
        f"{results.get('num_samples', '?')} samples | flip test {flip} | {weights}"
    )
    lines.append("")
    comparison = results.get("comparison")
    overall = []
    for metric, label in METRIC_LABELS.items():
        compared = comparison is not None and comparison.get("metric") == metric
        overall.append([
            label,
            num(results.get("metrics", {}).get(metric)),
            num(comparison["paper"]) if compared else "-",
            f"{comparison['diff']:+.2f}" if compared else "-",
            comparison["band"] if compared else "-",
        ])  # fmt: skip
    lines += text_table(["metric (mm)", "ours", "paper", "diff", "band"], overall)
    metrics, average = results.get("metrics") or {}, results.get("action_average") or {}
    lines.append(
        f"N-MPJPE {num(metrics.get('n_mpjpe'))} mm; 3DPCK@150mm {num(metrics.get('pck3d_150'))} %; "
        f"AUC {num(metrics.get('auc3d'))} %; action-wise average MPJPE {num(average.get('mpjpe'))} mm"
    )
    if results.get("skip_corrupt_s9"):
        dropped = ", ".join(results.get("dropped_sequences") or [])
        lines.append(f"Left out the S9 sequences with corrupt ground truth ({dropped}); the paper keeps them.")
    lines.append("")
    per_action = results.get("per_action") or {}
    rows = []
    for action in ACTION_NAMES:
        values = per_action.get(action) or {}
        rows.append([action, *(num(values.get(m)) for m in METRIC_LABELS), str(values.get("num_samples", "-"))])
    lines += text_table(["action", *METRIC_LABELS.values(), "samples"], rows)
    model, speed = results.get("model") or {}, results.get("throughput") or {}
    extras = []
    if model.get("params") is not None:
        extras.append(f"{model['params'] / 1e6:.2f} M params")
    if model.get("gflops") is not None:
        extras.append(f"{model['gflops']:.2f} GFLOPs")
    if speed.get("images_per_s") is not None:
        extras.append(f"{speed['images_per_s']:.1f} images/s on {speed.get('device', '?')} x{speed.get('devices', 1)}")
    if extras:
        lines += ["", "; ".join(extras)]
    # Repeated at the bottom: the end of the output is what stays on screen.
    lines += banners
    return "\n".join(lines)





def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown_summary(results: dict[str, Any], run_dir: Path | None = None) -> str:
    """One run as Markdown, for notebooks: the warnings, what ran, the metrics against the paper, each action."""
    lines = [f"**{text}**" for text in warning_flags(results)]
    checkpoint = results.get("checkpoint") or {}
    flip = {True: "on", False: "off"}.get(results.get("flip_test"), "?")
    source = Path(checkpoint["path"]).name if checkpoint.get("path") else "an ONNX file"
    lines += [
        f"**ConvNeXtPose-{results.get('variant', '?')}**, protocol {results.get('protocol')}, "
        f"{results.get('num_samples', '?')} images, flip test {flip}, {source}",
        "",
    ]
    comparison = results.get("comparison")
    rows = []
    for metric, label in METRIC_LABELS.items():
        compared = comparison is not None and comparison.get("metric") == metric
        rows.append([label, num((results.get("metrics") or {}).get(metric)), num(comparison["paper"]) if compared else "-",
                     f"{comparison['diff']:+.2f}" if compared else "-", comparison["band"] if compared else "-"])  # fmt: skip
    lines += _markdown_table(["metric (mm)", "ours", "paper", "diff", "band"], rows)
    per_action = results.get("per_action") or {}
    action_rows = [[action, *(num((per_action.get(action) or {}).get(m)) for m in METRIC_LABELS)] for action in ACTION_NAMES]
    lines += ["", *_markdown_table(["action", *METRIC_LABELS.values()], action_rows)]
    if run_dir is not None:
        lines += ["", f"Run folder: `{run_dir}`"]
    return "\n".join(lines)


ORACLE_LIMIT_MM = 1.0


def oracle_verdict(results: dict[str, Any]) -> str:
    """PASS when every error of an oracle run is below 1 mm: the data side of the install reproduces the geometry."""
    metrics = results.get("metrics") or {}
    values = [metrics.get(name) for name in METRIC_LABELS]
    worst = max((float(v) for v in values if v is not None), default=float("nan"))
    passed = worst < ORACLE_LIMIT_MM
    verdict = "PASS" if passed else "FAIL"
    return f"oracle check: {verdict} (largest error {worst:.4f} mm, must be < {ORACLE_LIMIT_MM:g} mm)"
