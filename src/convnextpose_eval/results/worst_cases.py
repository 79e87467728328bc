"""The worst-cases picture: the test crops with the highest error, ground truth and prediction drawn over them.

Seeing where a checkpoint fails (a flipped pose, a wrong depth order, a bad
crop) tells more than any mean; this grid makes that visible in one PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patheffects import withStroke

from ..common.errors import EvalError
from ..common.human36m import EVAL_JOINTS, SKELETON
from .paper import ORACLE_WARNING, SYNTHETIC_WARNING

MAX_PANELS = 12
COLUMNS = 4
# Green and magenta: they stay apart under the common colour-vision deficiencies too.
GROUND_TRUTH_COLOUR = "#1ee61e"
PREDICTION_COLOUR = "#f01ef0"
_NUM_JOINTS = len(EVAL_JOINTS)
_BONES = tuple((a, b) for a, b in SKELETON if a < _NUM_JOINTS and b < _NUM_JOINTS)
_PANEL_INCHES = (3.2, 3.5)
_LEGEND_INCHES = 0.5
# Above the first row: the figure title, then the panels' two-line titles; each caption line adds its own.
_TITLE_INCHES = 0.85
_CAPTION_LINE_INCHES = 0.22
TITLE = "Highest-error test images"
WARNING_COLOUR = "#d62728"
_DPI = 100
# A dark rim keeps both skeletons readable on light, dark and green backgrounds alike.
_RIM = [withStroke(linewidth=3.5, foreground="black", alpha=0.6)]


class WorstCaseError(EvalError, ValueError):
    """A worst case to draw is malformed, or there are none or too many."""


@dataclass(frozen=True)
class WorstCase:
    """One test image to show: its crop (S, S, 3) uint8 RGB and both poses' 17 joints in crop pixels."""

    crop: np.ndarray
    pred_xy: np.ndarray
    gt_xy: np.ndarray
    image_id: int
    action: str
    error_mm: float
    # Root-relative ground truth in mm (17, 3), for views that show the pose in 3D (the run's page).
    gt_cam: np.ndarray | None = None

    def __post_init__(self) -> None:
        crop = self.crop
        if not (isinstance(crop, np.ndarray) and crop.dtype == np.uint8 and crop.ndim == 3
                and crop.shape[0] == crop.shape[1] > 0 and crop.shape[2] == 3):  # fmt: skip
            shape = getattr(crop, "shape", None)
            raise WorstCaseError(
                f"worst case image {self.image_id}: crop must be an (S, S, 3) uint8 RGB array, "
                f"got {type(crop).__name__} {getattr(crop, 'dtype', '')} {shape}"
            )
        for name in ("pred_xy", "gt_xy"):
            joints = np.asarray(getattr(self, name))
            if joints.shape != (_NUM_JOINTS, 2) or not np.isfinite(joints).all():
                raise WorstCaseError(
                    f"worst case image {self.image_id}: {name} must be {_NUM_JOINTS} finite (x, y) pairs, "
                    f"got shape {joints.shape}"
                )
        if self.gt_cam is not None and (np.shape(self.gt_cam) != (_NUM_JOINTS, 3) or not np.isfinite(self.gt_cam).all()):
            raise WorstCaseError(f"worst case image {self.image_id}: gt_cam must be {_NUM_JOINTS} finite (x, y, z) joints, got shape {np.shape(self.gt_cam)}")


@dataclass(frozen=True)
class RunCaption:
    """What the picture is of, printed above the grid and stored in the PNG's text fields: which network and
    weights (``lines``) and the markers that say the figures are not a model's accuracy (``warnings``)."""

    lines: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def run_caption(results: Mapping[str, Any]) -> RunCaption:
    """The caption of a run's picture, from its results.json: variant, test set, checkpoint or ONNX file, markers."""
    boxes = "ground-truth boxes" if results.get("use_gt_info", True) else "RootNet boxes"
    lines = [f"ConvNeXtPose-{results['variant']} | protocol {results['protocol']} | {results['num_samples']} test images | {boxes}"]
    checkpoint = results.get("checkpoint")
    onnx = (results.get("inference") or {}).get("onnx")
    if onnx:
        lines.append(f"ONNX model {PurePath(onnx['path']).name} (sha256 {str(onnx['sha256'])[:12]}) on ONNX Runtime, {onnx['provider']}")
    if checkpoint:
        epoch = f"epoch {checkpoint['epoch']}, " if checkpoint.get("epoch") is not None else ""
        lines.append(f"checkpoint {PurePath(checkpoint['path']).name} ({epoch}sha256 {str(checkpoint['sha256'])[:12]})")
    elif not onnx:
        lines.append("no checkpoint")
    warnings = [text for key, text in (("synthetic", SYNTHETIC_WARNING), ("oracle", ORACLE_WARNING)) if results.get(key)]
    return RunCaption(tuple(lines), tuple(warnings))


def _draw_skeleton(axes, joints_xy: np.ndarray, colour: str) -> None:
    """The bones as one collection (one artist, not one line each: drawing stays cheap), then the joints."""
    joints = np.asarray(joints_xy, dtype=np.float64)
    bones = LineCollection([joints[[a, b]] for a, b in _BONES], colors=colour, linewidths=2.0, capstyle="round",
                           path_effects=_RIM)  # fmt: skip
    axes.add_collection(bones, autolim=False)
    axes.plot(joints[:, 0], joints[:, 1], linestyle="none", marker="o", markersize=5, color=colour,
              markeredgecolor="black", markeredgewidth=0.6)  # fmt: skip


def render_worst_cases(cases: Sequence[WorstCase], caption: RunCaption = RunCaption()) -> bytes:
    """A PNG grid, four panels a row and at most three rows, in the order given (worst first), under a title
    that names the run (``caption``; its warnings in red). The PNG's Title and Description fields hold the same."""
    if not 1 <= len(cases) <= MAX_PANELS:
        raise WorstCaseError(f"the worst-cases picture shows 1 to {MAX_PANELS} images, got {len(cases)}")
    columns = min(COLUMNS, len(cases))
    rows = math.ceil(len(cases) / COLUMNS)
    width, height = _PANEL_INCHES
    caption_inches = _CAPTION_LINE_INCHES * (len(caption.lines) + len(caption.warnings))
    title_inches = _TITLE_INCHES + caption_inches
    total_height = rows * height + _LEGEND_INCHES + title_inches
    # Fixed margins rather than a layout engine, which would draw the whole figure twice.
    figure = Figure(figsize=(columns * width, total_height), dpi=_DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=_LEGEND_INCHES / total_height, top=1 - title_inches / total_height,
                           wspace=0.08, hspace=0.22)  # fmt: skip
    figure.suptitle(TITLE, fontsize=12, y=1 - 0.12 / total_height, va="top")
    # The caption's lines under the title, one text each so the warnings can be red and bold.
    for number, (text, warning) in enumerate([(line, False) for line in caption.lines] + [(w, True) for w in caption.warnings]):
        figure.text(0.5, 1 - (0.12 + 0.24 + number * _CAPTION_LINE_INCHES) / total_height, text, ha="center", va="top",
                    fontsize=9, color=WARNING_COLOUR if warning else "black", fontweight="bold" if warning else "normal")  # fmt: skip
    for index, case in enumerate(cases):
        axes = figure.add_subplot(rows, columns, index + 1)
        side = case.crop.shape[0]
        axes.imshow(case.crop, interpolation="nearest")
        # Ground truth first, so the prediction stays visible where they overlap.
        _draw_skeleton(axes, case.gt_xy, GROUND_TRUTH_COLOUR)
        _draw_skeleton(axes, case.pred_xy, PREDICTION_COLOUR)
        # A joint outside the crop must not zoom the panel out.
        axes.set_xlim(-0.5, side - 0.5)
        axes.set_ylim(side - 0.5, -0.5)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(f"image {case.image_id} | {case.action}\nMPJPE {case.error_mm:.1f} mm", fontsize=9)
    figure.legend(
        handles=[
            Line2D([], [], color=GROUND_TRUTH_COLOUR, marker="o", linewidth=2.0, label="ground truth"),
            Line2D([], [], color=PREDICTION_COLOUR, marker="o", linewidth=2.0, label="prediction"),
        ],
        loc="lower center", bbox_to_anchor=(0.5, 0.1 / total_height), ncols=2, fontsize=10, frameon=False,
    )  # fmt: skip
    buffer = io.BytesIO()
    # zlib level 1: a third of the encoding time of the default level for a file about 15 % larger.
    metadata = {"Title": TITLE, "Description": "\n".join((*caption.lines, *caption.warnings))}
    figure.savefig(buffer, format="png", metadata=metadata, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()
