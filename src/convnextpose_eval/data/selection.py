"""Choose test images by sequence: the S9 sequences with corrupt ground truth that recent work leaves out."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..common.errors import DataError
from .h36m import TestIndex


def sequence_of(file_name: str) -> str:
    """``s_09_act_05_subact_02_ca_01/s_09_..._000001.jpg`` -> ``s_09_act_05_subact_02`` (all cameras)."""
    return file_name.split("/")[0].split("_ca_")[0]


def drop_sequences(index: TestIndex, sequences: tuple[str, ...]) -> TestIndex:
    """The index without the test images of ``sequences``; every image would be dropped -> DataError."""
    if not sequences:
        return index
    keep = np.array([sequence_of(str(name)) not in set(sequences) for name in index.file_name], dtype=bool)
    if not keep.any():
        raise DataError(f"data.corrupt_s9_sequences: leaving out {', '.join(sequences)} leaves no test images")
    return TestIndex(**{f.name: getattr(index, f.name)[keep] for f in dataclasses.fields(TestIndex)})
