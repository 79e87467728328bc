"""deploy_results.json, DEPLOY_REPORT.md and deploy_tradeoff.png of one matrix; a summary for a sweep.

The JSON is written last and atomically, so a folder holding it holds the other two as well. Figures on
the synthetic sample carry its label in the report, in the picture and in the JSON (``label``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..common.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..report.html import deploy_page
from ..results.files import REPORT_HTML

RESULTS_FILE = "deploy_results.json"
REPORT_FILE = "DEPLOY_REPORT.md"
PLOT_FILE = "deploy_tradeoff.png"
SUMMARY_FILE = "deploy_summary.json"
SUMMARY_REPORT = "DEPLOY_SUMMARY.md"


def _mm(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _difference(row: dict[str, Any], metric: str) -> str:
    block = (row.get("difference") or {}).get(metric)
    if not block:
        return "-"
    low, high = block["ci95"]
    return f"{block['value']:+.2f} [{low:+.2f}, {high:+.2f}]"


def table_rows(record: dict[str, Any]) -> list[list[str]]:
    """One Markdown table row per format: what a person shipping the model reads first."""
    out = []
    for row in record["formats"]:
        if row["status"] != "ok":
            out.append([f"`{row['format']}`", row["status"], "-", "-", "-", "-", "-", "-", "-", row["reason"] or ""])
            continue
        latency, size = row["latency_ms"], row["size_bytes"]
        moved = ", ".join(f"{j['joint']} {j['difference_mm']:+.2f}" for j in row.get("joints_moved_most") or [])
        out.append([f"`{row['format']}`", "ok", f"{size / 1e6:.1f}", _mm(row["metrics"]["mpjpe"]), _difference(row, "mpjpe"),
                    _difference(row, "pa_mpjpe"), f"{latency['p50']:.1f} / {latency['p90']:.1f} / {latency['p99']:.1f}",
                    f"{row['throughput_ips']:.1f}", f"{row['check']['max_coord_diff']:.1e}", moved or "-"])  # fmt: skip
    return out


HEADER = ["format", "status", "MB", "MPJPE", "diff MPJPE [95% CI]", "diff PA-MPJPE [95% CI]", "batch-1 ms p50/p90/p99",
          "img/s", "check max diff", "joints moved most (mm) / reason"]  # fmt: skip


def markdown_table(rows: list[list[str]], header: list[str] = HEADER) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def render_report(record: dict[str, Any]) -> str:
    """The Markdown report of one matrix."""
    timing, boot = record["timing"], record["bootstrap"]
    lines = [f"# Deployed formats of ConvNeXtPose-{record['variant']}", ""]
    if record.get("label"):
        lines += [f"**{record['label']}**", ""]
    lines += [
        (f"{record['num_samples']} test images of protocol {record['protocol']} ({', '.join(record['test_subjects'])}), "
        f"flip test {'on' if record['flip_test'] else 'off'}; every format scored on the same images. Differences are "
        f"format minus `{record['reference']}` in mm, with a paired bootstrap 95% interval over images "
        f"({boot['resamples']} resamples, seed {boot['seed']})."),
        (f"Latency: one crop, batch 1, {timing['batch1_runs']} timed runs after {timing['warmup_runs']} warm-up runs, "
        f"{timing['threads']} threads, formats interleaved run by run; throughput: batches of {timing['throughput_batch_size']} "
        f"crops ({timing['throughput_batches']} timed after one warm-up), no flip. Load average at the end: {timing['load_average']}."),
        "The check is the largest coordinate difference from PyTorch (heatmap units) on held-out test crops and their mirrors.",
        "",
        *markdown_table(table_rows(record)),
        "",
    ]
    calibration = record.get("calibration")
    if calibration:
        lines += [(f"int8 calibration: {calibration['num_images']} crops (and their mirrors) of "
                   f"{', '.join(calibration['subjects'])} (protocol {calibration['protocol']} trains on "
                   f"{', '.join(calibration['training_subjects'])}); image ids {calibration['image_ids']}."), ""]  # fmt: skip
    lines += ["What each format keeps in float32:", ""]
    for row in record["formats"]:
        if row.get("kept_in_float"):
            lines.append(f"- `{row['format']}`: {row['kept_in_float']}")
    users = [row for row in record["formats"] if row["format"].startswith("user:") and row.get("proven")]
    if users:
        lines += ["", "Users' files (what was proven about them):", ""]
        for row in users:
            proof = row["proven"]
            lines.append(f"- `{row['format']}`: recorded checkpoint sha256 {proof['recorded_checkpoint_sha256'] or 'none'} "
                         f"(matches this checkpoint: {proof['recorded_matches_checkpoint']}); largest coordinate difference "
                         f"from this checkpoint's network {proof['max_coord_diff_vs_checkpoint']:.2e} heatmap units")  # fmt: skip
    lines += ["", f"![accuracy against latency]({PLOT_FILE})", ""]
    return "\n".join(lines)


def render_plot(record: dict[str, Any]) -> bytes:
    """MPJPE difference (with its interval) against batch-1 p50 latency, one point per scored format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for row in record["formats"]:
        if row["status"] != "ok" or not row.get("difference"):
            continue
        block = row["difference"]["mpjpe"]
        x, y = row["latency_ms"]["p50"], block["value"]
        low, high = block["ci95"]
        axes.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt="o", capsize=3)
        axes.annotate(row["format"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.set_xlabel("batch-1 latency p50 (ms)")
    axes.set_ylabel(f"MPJPE minus {record['reference']} (mm, 95% CI)")
    axes.set_title(f"ConvNeXtPose-{record['variant']}: accuracy against latency ({record['num_samples']} images)", fontsize=10)
    if record.get("label"):
        figure.text(0.5, 0.5, "SYNTHETIC", fontsize=48, color="red", alpha=0.18, ha="center", va="center", rotation=20)
        figure.text(0.01, 0.01, record["label"], fontsize=7, color="red")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_matrix(folder: Path, record: dict[str, Any]) -> Path:
    """The report, the picture, the HTML page (docs/report.md), then deploy_results.json, each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {**record, "files": {"report": REPORT_FILE, "plot": PLOT_FILE, "page": REPORT_HTML}}
    atomic_write_text(folder / REPORT_FILE, render_report(record))
    atomic_write_bytes(folder / PLOT_FILE, render_plot(record))
    atomic_write_bytes(folder / REPORT_HTML, deploy_page(record, folder))
    atomic_write_json(folder / RESULTS_FILE, record)
    return folder / RESULTS_FILE


def write_summary(folder: Path, jobs: list[tuple[str, Path, dict[str, Any] | None, str | None]]) -> None:
    """A sweep's summary: each variant's folder and status, and every format's row side by side."""
    entries, lines = [], ["# Deployed formats, all variants", ""]
    labels = {record["label"] for _, _, record, _ in jobs if record and record.get("label")}
    lines += [f"**{label}**" for label in sorted(labels)] + ([""] if labels else [])
    for variant, path, record, error in jobs:
        entries.append({"variant": variant, "folder": str(path), "status": "ok" if record else "failed", "error": error,
                        "formats": [{key: row.get(key) for key in ("format", "status", "reason", "size_bytes", "metrics",
                                     "difference", "latency_ms", "throughput_ips")} for row in (record or {}).get("formats", [])]})  # fmt: skip
        lines += [f"## {variant} ({path.name})", ""]
        lines += markdown_table(table_rows(record)) if record else [f"failed: {error}"]
        lines.append("")
    for entry in entries:
        for row in entry["formats"]:
            if row.get("latency_ms"):
                row["latency_ms"] = {k: v for k, v in row["latency_ms"].items() if k != "timings"}
    atomic_write_text(folder / SUMMARY_REPORT, "\n".join(lines))
    atomic_write_json(folder / SUMMARY_FILE, {"tool": "convnextpose-eval", "kind": "deploy-summary", "jobs": entries})
