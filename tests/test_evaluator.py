"""The LightningModule's own guards: a prediction that is not a number must never be scored as nothing."""

from __future__ import annotations

import math

import pytest
import torch

from convnextpose_eval.common.errors import EvalError
from convnextpose_eval.model.evaluator import check_finite


def test_nan_prediction_is_refused_naming_the_image() -> None:
    pred = torch.zeros(3, 18, 3, dtype=torch.float64)
    pred[1, 4, 2] = math.nan
    with pytest.raises(EvalError, match=r"ckpt\.tar: non-finite predictions for 1 images .*first: image 42"):
        check_finite(pred, torch.tensor([41, 42, 43]), "ckpt.tar")


def test_infinite_prediction_is_refused() -> None:
    pred = torch.zeros(2, 18, 3, dtype=torch.float64)
    pred[0, 0, 0] = math.inf
    pred[1, 0, 0] = -math.inf
    with pytest.raises(EvalError, match=r"for 2 images .*first: image 7"):
        check_finite(pred, torch.tensor([7, 8]), None)


def test_finite_predictions_pass() -> None:
    check_finite(torch.randn(4, 18, 3, dtype=torch.float64) * 1e4, torch.arange(4), "ckpt.tar")


@pytest.fixture
def restore_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("tf32", [False, True])
def test_setup_allows_tf32_only_when_asked(compose, restore_tf32, tf32: bool) -> None:
    """PyTorch lets cuDNN use TF32 by default (docs/protocol.md, "Pitfalls in the stack"); every rank's setup sets it as configured."""
    from convnextpose_eval.backends import ForwardSource
    from convnextpose_eval.config.compose import as_plain, variant_table
    from convnextpose_eval.model.evaluator import PoseEvaluator
    from convnextpose_eval.network import ArchSpec

    cfg = compose("variant=XS")
    known = {name: ArchSpec.from_variant(node) for name, node in variant_table(cfg).items()}
    module = PoseEvaluator(ForwardSource(variant=as_plain(cfg.variant), known=known), "pytorch", oracle=True, tf32=tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not tf32
    module.setup("test")
    assert torch.backends.cuda.matmul.allow_tf32 is tf32
    assert torch.backends.cudnn.allow_tf32 is tf32
