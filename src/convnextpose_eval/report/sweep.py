"""Gather every job folder of a sweep into ``benchmark_results.json``, ``BENCHMARK_REPORT.md``, the PNG and ``report.html``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..common.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..common.human36m import ACTION_NAMES, EVAL_JOINT_NAMES
from ..results.contract import schema_version
from ..results.files import (
    BENCHMARK_JSON,
    BENCHMARK_MD,
    BENCHMARK_PNG,
    MLFLOW_STORE_DIR,
    REPORT_HTML,
)
from ..results.paper import (
    FALLBACK_BAND,
    HEADLINE_METRIC,
    ORACLE_WARNING,
    SYNTHETIC_WARNING,
)
from ..results.records import TOOL_NAME
from .entries import headline, labels_for, order_key, paper_figure, read_entry
from .html import sweep_page
from .labels import METRIC_LABELS
from .summary import num
from .sweep_plot import plot_sweep


def _job_started_ns(job_dir: Path) -> int:
    """When the job last started: Hydra writes ``.hydra/hydra.yaml`` first thing (rewriting it in a reused job
    folder, which leaves the folder's own time alone); the ``.hydra`` or job folder otherwise."""
    for marker in (job_dir / ".hydra" / "hydra.yaml", job_dir / ".hydra"):
        if marker.exists():
            return marker.stat().st_mtime_ns
    return job_dir.stat().st_mtime_ns


def write_sweep_report(
    sweep_dir: Path,
    bands: Sequence[tuple[float, str]] | None = None,
    since_ns: int | None = None,
    papers: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Gather the sweep's job folders and write the JSON, Markdown, PNG and HTML reports into the sweep folder.

    With ``bands`` the comparisons are recomputed with them; without, each job's stored comparison is used.
    With ``since_ns`` only jobs started at or after it count (a reused sweep folder keeps older job folders).
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: sweep folder does not exist")
    job_dirs = [p for p in sorted(sweep_dir.iterdir()) if p.is_dir() and not p.name.startswith(".") and p.name != MLFLOW_STORE_DIR]
    if since_ns is not None:
        job_dirs = [p for p in job_dirs if _job_started_ns(p) >= since_ns]
    entries = sorted((read_entry(p, bands) for p in job_dirs), key=lambda entry: order_key(entry, papers))
    ok = [e for e in entries if e["status"] == "ok"]
    protocols = {e["protocol"] for e in entries if e.get("protocol") is not None}
    aggregate = {
        "tool": TOOL_NAME,
        "schema_version": schema_version(BENCHMARK_JSON),
        "synthetic": any(e["results"].get("synthetic") for e in ok),
        "oracle": any(e["results"].get("oracle") for e in ok),
        # One protocol for the whole sweep, or None when the jobs mixed them (each entry carries its own).
        "protocol": protocols.pop() if len(protocols) == 1 else None,
        "entries": entries,
    }
    atomic_write_json(sweep_dir / BENCHMARK_JSON, aggregate)
    atomic_write_text(sweep_dir / BENCHMARK_MD, _markdown(aggregate, sweep_dir, bands))
    atomic_write_bytes(sweep_dir / BENCHMARK_PNG, plot_sweep(aggregate))
    atomic_write_bytes(sweep_dir / REPORT_HTML, sweep_page(aggregate, sweep_dir))
    return aggregate


# --------------------------------------------------------------------------- sweep Markdown


def _cell(text: Any) -> str:
    """Markdown-safe single-line table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _markdown(aggregate: dict[str, Any], sweep_dir: Path, bands: Sequence[tuple[float, str]] | None) -> str:
    entries = aggregate["entries"]
    ok = [e for e in entries if e["status"] == "ok"]
    labels = labels_for(entries)
    lines = ["# ConvNeXtPose on Human3.6M: benchmark against the paper", ""]
    for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)):
        flagged = [label for label, e in zip(labels, entries) if e["status"] == "ok" and e["results"].get(key)]
        if flagged:
            lines += [f"> **WARNING: {text}.** Affected: {', '.join(flagged)}.", ""]
    protocol = aggregate["protocol"]
    protocol_text = f"protocol {protocol}" if protocol is not None else "protocols as listed per row"
    lines += [
        f"Sweep folder: `{sweep_dir}`  ",
        f"Jobs: {len(entries)} ({len(ok)} ok, {len(entries) - len(ok)} failed); {protocol_text}. "
        "The paper's figure is MPJPE for protocol 2 and PA-MPJPE for protocol 1; errors in mm.",
    ]
    if bands is not None:
        legend = ", ".join(f"< {t:g} mm {label}" for t, label in sorted((float(t), str(n)) for t, n in bands))
        lines.append(f"Bands on |ours - paper|: {legend}, otherwise {FALLBACK_BAND}.")
    lines += ["", "## Results per variant", ""]
    header = ["Variant", "Status", "Protocol", "Samples", "MPJPE", "PA-MPJPE (rigid, paper's)", "PA-MPJPE (scaled)",
              "Paper", "Diff", "Band", "Params (M) ours / paper", "GFLOPs ours / paper", "Throughput (img/s)"]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in zip(labels, entries):
        figure = paper_figure(entry)
        paper = entry.get("paper") or {}
        paper_text = (
            f"{figure:.2f} ({METRIC_LABELS[HEADLINE_METRIC[entry['protocol']]]})" if figure is not None else "-"
        )
        if entry["status"] != "ok":
            row = [label, f"**FAILED**: {entry['error']}", entry.get("protocol") or "-", "-", "-", "-", "-",
                   paper_text, "-", "-", "-", "-", "-"]  # fmt: skip
        else:
            results = entry["results"]
            metrics, model, speed = results.get("metrics") or {}, results.get("model") or {}, results.get("throughput") or {}
            backend = (results.get("inference") or {}).get("backend", "pytorch")
            status = " ".join(["ok", *(f"**{k.upper()}**" for k in ("synthetic", "oracle") if results.get(k)),
                               *([f"({backend})"] if backend != "pytorch" else [])])  # fmt: skip
            comparison = entry.get("comparison")
            ips = speed.get("images_per_s")
            row = [
                label, status, entry["protocol"], results.get("num_samples", "-"),
                *(num(metrics.get(m)) for m in METRIC_LABELS), paper_text,
                f"{comparison['diff']:+.2f}" if comparison else "-",
                comparison["band"] if comparison else "-",
                f"{num(model['params'] / 1e6) if model.get('params') is not None else '-'} / {num(paper.get('params_m'))}",
                f"{num(model.get('gflops'))} / {num(paper.get('gflops'))}",
                f"{ips:.1f} ({speed.get('device', '?')} x{speed.get('devices', 1)})" if ips is not None else "-",
            ]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    lines += ["", "## Per action (each column: its protocol's paper metric, mm)", ""]
    ok_labels = [label for label, e in zip(labels, entries) if e["status"] == "ok"]
    if not ok:
        lines.append("No job succeeded: no per-action figures.")
    else:
        columns = [f"{label} {METRIC_LABELS[HEADLINE_METRIC[e['protocol']]]}" for label, e in zip(ok_labels, ok)]
        lines += ["| Action | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for action in ACTION_NAMES:
            values = [num(headline(e, (e["results"].get("per_action") or {}).get(action) or {})) for e in ok]
            lines.append(f"| {action} | " + " | ".join(values) + " |")
        lines.append("| **Overall** | " + " | ".join(f"**{num(headline(e))}**" for e in ok) + " |")
        lines += ["", "## Per joint (MPJPE, mm; Thorax is not evaluated)", ""]
        lines += ["| Joint | " + " | ".join(ok_labels) + " |", "|---|" + "---:|" * len(ok_labels)]
        for joint in EVAL_JOINT_NAMES:
            values = [num(((e["results"].get("per_joint") or {}).get(joint) or {}).get("mpjpe")) for e in ok]
            lines.append(f"| {joint} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


