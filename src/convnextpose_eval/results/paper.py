"""Our figures next to the paper's: which metric each protocol reports, the difference and its tolerance band,
and the warnings a result that is not the model's accuracy must carry.

Part of every run's results (``results.json``'s ``comparison``); the reports read it from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The metric each protocol's paper figure is about, and the key of that figure in the variant's `paper` block.
HEADLINE_METRIC: dict[int, str] = {1: "pa_mpjpe", 2: "mpjpe"}
PAPER_KEY: dict[int, str] = {1: "pa_mpjpe_p1", 2: "mpjpe_p2"}
# The band for a difference no configured band covers.
FALLBACK_BAND = "review"
# What a result that is not the model's accuracy on Human3.6M must say wherever it is shown.
SYNTHETIC_WARNING = "SYNTHETIC SAMPLE, NOT Human3.6M: these numbers say nothing about the model's accuracy"
ORACLE_WARNING = "ORACLE: predictions were taken from the ground truth (install check), not from the model"


def tolerance_band(diff: float, bands: Sequence[tuple[float, str]]) -> str:
    """The label of the tightest band with ``|diff| < threshold``; a NaN difference lands in the fallback."""
    for threshold, label in sorted((float(t), str(name)) for t, name in bands):
        if abs(diff) < threshold:
            return label
    return FALLBACK_BAND


def compare_to_paper(
    metrics: dict[str, Any], paper: dict[str, Any] | None, protocol: int, bands: Sequence[tuple[float, str]]
) -> dict[str, Any] | None:
    """Our headline error next to the paper's, or None when the paper gives no figure for this protocol.

    The difference is rounded to 1e-6 mm so that a float artefact (52.8 - 51.8 = 0.99999...) cannot move
    a result across a band edge.
    """
    if protocol not in HEADLINE_METRIC:
        raise ValueError(f"protocol must be 1 or 2, not {protocol!r}")
    metric = HEADLINE_METRIC[protocol]
    figure = None if paper is None else paper.get(PAPER_KEY[protocol])
    ours = metrics.get(metric)
    if figure is None or ours is None:
        return None
    diff = round(float(ours) - float(figure), 6)
    return {"metric": metric, "ours": float(ours), "paper": float(figure), "diff": diff,
            "band": tolerance_band(diff, bands)}  # fmt: skip
