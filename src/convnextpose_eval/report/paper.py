"""How reports label the paper comparison: metric names and the warnings a result must carry.

The comparison itself (which metric each protocol reports, the difference and its band) is part of a
run's results (``results/paper.py``), which this room reads; it is re-exported here for the reports.
"""

from __future__ import annotations

from ..results.paper import FALLBACK_BAND, HEADLINE_METRIC, PAPER_KEY, compare_to_paper, tolerance_band

__all__ = ["FALLBACK_BAND", "HEADLINE_METRIC", "METRIC_LABELS", "ORACLE_WARNING", "PAPER_KEY", "SYNTHETIC_WARNING",
           "compare_to_paper", "tolerance_band"]  # fmt: skip

METRIC_LABELS: dict[str, str] = {
    "mpjpe": "MPJPE",
    "pa_mpjpe": "PA-MPJPE",
    "pa_mpjpe_scaled": "PA-MPJPE (scaled)",
}
SYNTHETIC_WARNING = "SYNTHETIC SAMPLE, NOT Human3.6M: these numbers say nothing about the model's accuracy"
ORACLE_WARNING = "ORACLE: predictions were taken from the ground truth (install check), not from the model"
