"""How reports label the paper comparison: metric names.

The comparison itself (which metric each protocol reports, the difference and its band) and the warnings a
result must carry are part of a run's results (``results/paper.py``, whose picture carries them too), which
this room reads; they are re-exported here for the reports.
"""

from __future__ import annotations

from ..results.paper import (
    FALLBACK_BAND,
    HEADLINE_METRIC,
    ORACLE_WARNING,
    PAPER_KEY,
    SYNTHETIC_WARNING,
    compare_to_paper,
    tolerance_band,
)

__all__ = ["FALLBACK_BAND", "HEADLINE_METRIC", "METRIC_LABELS", "ORACLE_WARNING", "PAPER_KEY", "SYNTHETIC_WARNING",
           "compare_to_paper", "tolerance_band"]  # fmt: skip

METRIC_LABELS: dict[str, str] = {
    "mpjpe": "MPJPE",
    "pa_mpjpe": "PA-MPJPE",
    "pa_mpjpe_scaled": "PA-MPJPE (scaled)",
}
