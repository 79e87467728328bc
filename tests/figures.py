"""Every figure of a results.json, flattened, and the check that two runs of one command agree on all of them.

The launches (DDP, torchrun, SLURM) and the reruns (after a kill, a failed write, an edited file) must give the
single clean run's figures: overall, action average, per action, per subject and per joint, with the sample
counts, to a tolerance in mm.
"""

from __future__ import annotations


def figures(results: dict) -> dict[str, float | None]:
    """Every figure of results.json (overall, action average, per action/subject/joint), flattened to path -> value."""
    flat: dict[str, float | None] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}/{key}", value)
        elif node is None or isinstance(node, (int, float)):
            flat[prefix] = node

    for block in ("metrics", "action_average", "per_action", "per_subject", "per_joint"):
        walk(block, results[block])
    flat["num_samples"] = results["num_samples"]
    return flat


def assert_same_figures(results: dict, single: dict, tolerance_mm: float) -> None:
    """``results`` has the figures of ``single``, each within ``tolerance_mm``; an empty group (null) only matches null."""
    ours, theirs = figures(results), figures(single)
    assert ours.keys() == theirs.keys() and len(ours) > 100
    for key, value in theirs.items():
        other = ours[key]
        assert (value is None) == (other is None) and (value is None or abs(other - value) <= tolerance_mm), (key, other, value)
