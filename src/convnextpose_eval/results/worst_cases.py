"""The worst-cases picture: the test crops with the highest error, ground truth and prediction drawn over them.

Seeing where a checkpoint fails (a flipped pose, a wrong depth order, a bad
crop) tells more than any mean; this grid makes that visible in one PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patheffects import withStroke

from ..errors import EvalError
from ..human36m import EVAL_JOINTS, SKELETON

MAX_PANELS = 12
COLUMNS = 4
# Green and magenta: they stay apart under the common colour-vision deficiencies too.
GROUND_TRUTH_COLOUR = "#1ee61e"
PREDICTION_COLOUR = "#f01ef0"
_NUM_JOINTS = len(EVAL_JOINTS)
_BONES = tuple((a, b) for a, b in SKELETON if a < _NUM_JOINTS and b < _NUM_JOINTS)
_PANEL_INCHES = (3.2, 3.5)
_LEGEND_INCHES = 0.5
# Above the first row: the figure title, then the panels' two-line titles.
_TITLE_INCHES = 0.85
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


def _draw_skeleton(axes, joints_xy: np.ndarray, colour: str) -> None:
    """The bones as one collection (one artist, not one line each: drawing stays cheap), then the joints."""
    joints = np.asarray(joints_xy, dtype=np.float64)
    bones = LineCollection([joints[[a, b]] for a, b in _BONES], colors=colour, linewidths=2.0, capstyle="round",
                           path_effects=_RIM)  # fmt: skip
    axes.add_collection(bones, autolim=False)
    axes.plot(joints[:, 0], joints[:, 1], linestyle="none", marker="o", markersize=5, color=colour,
              markeredgecolor="black", markeredgewidth=0.6)  # fmt: skip


def render_worst_cases(cases: Sequence[WorstCase]) -> bytes:
    """A PNG grid, four panels a row and at most three rows, in the order given (worst first)."""
    if not 1 <= len(cases) <= MAX_PANELS:
        raise WorstCaseError(f"the worst-cases picture shows 1 to {MAX_PANELS} images, got {len(cases)}")
    columns = min(COLUMNS, len(cases))
    rows = math.ceil(len(cases) / COLUMNS)
    width, height = _PANEL_INCHES
    total_height = rows * height + _LEGEND_INCHES + _TITLE_INCHES
    # Fixed margins rather than a layout engine, which would draw the whole figure twice.
    figure = Figure(figsize=(columns * width, total_height), dpi=_DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=_LEGEND_INCHES / total_height, top=1 - _TITLE_INCHES / total_height,
                           wspace=0.08, hspace=0.22)  # fmt: skip
    figure.suptitle("Highest-error test images", fontsize=12, y=1 - 0.12 / total_height, va="top")
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
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()
