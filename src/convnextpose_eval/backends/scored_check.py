"""Which of a run's scored batches are also run through the checkpoint's PyTorch network, and what they showed.

An exported file is vouched for by the batches it actually scored, not by a few crops run before: a share
of the run's own batches, drawn at random from a seed made fresh for each run (``secrets``, never derived
from the file or the data), is computed twice, and one coordinate beyond the tolerance stops the run. A
file that is right only at some batch sizes, on some rows, or on the crops a fixed check would use, cannot
know which batches will be compared. docs/onnx-trust.md gives the chance of missing a wrong file.
"""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

# A run's default: about one batch in 16, and never fewer than two (all of them in a shorter run).
DEFAULT_SHARE = 1 / 16
DEFAULT_MIN_BATCHES = 2


def fresh_seed() -> int:
    """A seed no one can predict from the file, the data or the time: 63 bits from the operating system."""
    return secrets.randbits(63)


def checked_count(num_batches: int, share: float, min_batches: int) -> int:
    """How many of ``num_batches`` are cross-checked: ``ceil(share x n)``, at least ``min_batches``, at most n."""
    return min(num_batches, max(min_batches, math.ceil(share * num_batches)))


@dataclass
class ScoredCheck:
    """One run's draw of batches to cross-check, and the running figures of the comparisons made."""

    share: float = DEFAULT_SHARE
    min_batches: int = DEFAULT_MIN_BATCHES
    seed: int | None = None
    batches_planned: int = 0
    batches_scored: int = 0
    batches_checked: int = 0
    inputs_checked: int = 0
    max_abs_diff: float = 0.0
    _chosen: frozenset[int] = field(default_factory=frozenset)

    def plan(self, num_batches: int, seed: int, rank: int = 0) -> None:
        """Draw this run's batches (of this rank's ``num_batches``) from ``seed``; every figure starts again."""
        self.seed = seed
        count = checked_count(num_batches, self.share, self.min_batches)
        # Each rank scores its own images; mixing in the rank gives each its own draw from the run's one seed.
        self._chosen = frozenset(random.Random(f"{seed}/{rank}").sample(range(num_batches), count))
        self.batches_planned = count
        self.batches_scored = self.batches_checked = self.inputs_checked = 0
        self.max_abs_diff = 0.0

    def next_batch_is_checked(self) -> bool:
        """Count one scored batch; whether it is one of the drawn ones."""
        index = self.batches_scored
        self.batches_scored += 1
        return index in self._chosen

    def record(self, inputs: int, max_abs_diff: float) -> None:
        """One drawn batch of ``inputs`` network inputs compared, agreeing to ``max_abs_diff``."""
        self.batches_checked += 1
        self.inputs_checked += inputs
        self.max_abs_diff = max(self.max_abs_diff, max_abs_diff)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "share": self.share, "min_batches": self.min_batches,
                "batches_scored": self.batches_scored, "batches_checked": self.batches_checked,
                "inputs_checked": self.inputs_checked, "max_abs_diff": self.max_abs_diff}  # fmt: skip
