"""The sweep figure: ours vs the paper per variant, and the per-action error of each variant."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..common.human36m import ACTION_NAMES, EVAL_JOINT_NAMES
from ..results.paper import HEADLINE_METRIC, ORACLE_WARNING, SYNTHETIC_WARNING
from .entries import headline, labels_for, paper_figure
from .labels import METRIC_LABELS

_OURS_COLOUR, _PAPER_COLOUR, _FAILED_COLOUR = "#1f77b4", "#b0b0b0", "#d62728"


def plot_sweep(aggregate: dict[str, Any]) -> bytes:
    """Three panels as PNG bytes: ours vs paper per variant, the per-action headline error, the per-joint MPJPE."""
    entries = aggregate["entries"]
    labels = labels_for(entries)
    figure = Figure(figsize=(17, 12), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    top_row, bottom_row = figure.subfigures(2, 1, height_ratios=[1, 0.75])
    left, right = top_row.subplots(1, 2, width_ratios=[1, 1.7])
    joints = bottom_row.subplots(1, 1)
    title = "ConvNeXtPose on Human3.6M: ours vs paper"
    warnings = [text for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)) if aggregate[key]]
    figure.suptitle("\n".join([title, *warnings]), fontsize=14, color=_FAILED_COLOUR if warnings else "black")

    # Left: ours vs paper, headline metric of each entry's protocol.
    width = 0.38
    ours = [headline(e) if e["status"] == "ok" else None for e in entries]
    paper = [paper_figure(e) for e in entries]
    known = [v for v in ours + paper if v is not None and math.isfinite(v)]
    # Headroom above the tallest bar for the diff/band annotation and the legend.
    top = max(known) * 1.35 if known else 1.0
    left.set_ylim(0, top)
    if not known:
        left.set_yticks([])
    xs = range(len(entries))
    for x, entry, mine, theirs in zip(xs, entries, ours, paper):
        if theirs is not None:
            left.bar(x + width / 2, theirs, width, color=_PAPER_COLOUR)
            left.text(x + width / 2, theirs, f"{theirs:.2f}", ha="center", va="bottom", fontsize=8)
        elif entry["status"] == "ok":
            left.text(x + width / 2, top * 0.02, "no paper figure", rotation=90, ha="center", va="bottom",
                      color="dimgray", fontsize=8)  # fmt: skip
        if entry["status"] != "ok":
            # A full-height band, not a bar: nothing about it may read as a measured error.
            left.axvspan(x - width, x, fill=False, hatch="//", edgecolor=_FAILED_COLOUR, linewidth=0)
            left.text(x - width / 2, top / 2, "FAILED", rotation=90, ha="center", va="center",
                      color=_FAILED_COLOUR, fontweight="bold", backgroundcolor="white")  # fmt: skip
            continue
        if mine is not None:
            left.bar(x - width / 2, mine, width, color=_OURS_COLOUR)
            left.text(x - width / 2, mine, f"{mine:.2f}", ha="center", va="bottom", fontsize=8)
        comparison = entry.get("comparison")
        if comparison is not None:
            left.text(x, max(mine or 0, theirs or 0) + top * 0.06, f"{comparison['diff']:+.2f}\n{comparison['band']}",
                      ha="center", va="bottom", fontsize=9, fontweight="bold")  # fmt: skip
    left.set_xticks(list(xs))
    left.set_xticklabels(
        [f"{label}\n{METRIC_LABELS.get(HEADLINE_METRIC.get(e.get('protocol')), '')}" for label, e in zip(labels, entries)]
    )
    left.set_xlim(-0.7, max(len(entries) - 0.3, 0.7))
    left.set_ylabel("error (mm)")
    protocol = aggregate["protocol"]
    left.set_title("Headline error per variant" + (f" (protocol {protocol})" if protocol is not None else ""))
    handles = [Patch(color=_OURS_COLOUR, label="ours"), Patch(color=_PAPER_COLOUR, label="paper")]
    if any(e["status"] != "ok" for e in entries):
        handles.append(Patch(fill=False, hatch="//", edgecolor=_FAILED_COLOUR, label="failed job (no value)"))
    left.legend(handles=handles, loc="upper left", ncols=len(handles), fontsize=9)

    # Right: per-action headline error, one line per successful entry.
    ok = [(label, e) for label, e in zip(labels, entries) if e["status"] == "ok"]
    positions = list(range(len(ACTION_NAMES)))
    for label, entry in ok:
        per_action = entry["results"].get("per_action") or {}
        values = [headline(entry, per_action.get(action) or {}) for action in ACTION_NAMES]
        metric = METRIC_LABELS[HEADLINE_METRIC[entry["protocol"]]]
        right.plot(positions, [math.nan if v is None else v for v in values], marker="o", label=f"{label} ({metric})")
    failed = [label for label, e in zip(labels, entries) if e["status"] != "ok"]
    if ok:
        legend = right.legend(loc="best", fontsize=9, title=f"failed, not shown: {', '.join(failed)}" if failed else None,
                              title_fontsize=9)  # fmt: skip
        legend.get_title().set_color(_FAILED_COLOUR)
    else:
        right.text(0.5, 0.5, "no successful job", transform=right.transAxes, ha="center", va="center",
                   color=_FAILED_COLOUR, fontsize=14)  # fmt: skip
        right.set_yticks([])
    _label_categories(right, ACTION_NAMES, "error (mm)", "Per action (each variant's headline metric)")

    # Bottom: per-joint MPJPE of every successful variant, to see which joints carry the error.
    joint_positions = list(range(len(EVAL_JOINT_NAMES)))
    for label, entry in ok:
        per_joint = entry["results"].get("per_joint") or {}
        values = [(per_joint.get(joint) or {}).get("mpjpe") for joint in EVAL_JOINT_NAMES]
        joints.plot(joint_positions, [math.nan if v is None else v for v in values], marker="o", label=label)
    if ok:
        joints.legend(loc="best", fontsize=9)
    _label_categories(joints, EVAL_JOINT_NAMES, "MPJPE (mm)", "Per joint (MPJPE, root-relative, unaligned)")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _label_categories(axes: Any, names: Sequence[str], ylabel: str, title: str) -> None:
    """One tick per name (actions or joints) along x, slanted to stay readable, with a light y grid."""
    axes.set_xticks(list(range(len(names))))
    axes.set_xticklabels(names, rotation=40, ha="right")
    axes.set_xlim(-0.5, len(names) - 0.5)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
