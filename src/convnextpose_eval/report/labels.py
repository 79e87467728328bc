"""How reports name the metrics. The comparison with the paper itself is part of a run's results (``results/paper.py``)."""

from __future__ import annotations

METRIC_LABELS: dict[str, str] = {
    "mpjpe": "MPJPE",
    "pa_mpjpe": "PA-MPJPE",
    "pa_mpjpe_scaled": "PA-MPJPE (scaled)",
}
