"""The worst-cases picture, read back as pixels: grid layout, skeleton colours at the joints, legend, bad input."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from convnextpose_eval.common.errors import EvalError
from convnextpose_eval.common.human36m import ACTION_NAMES
from convnextpose_eval.results.paper import ORACLE_WARNING, SYNTHETIC_WARNING
from convnextpose_eval.results.worst_cases import (
    GROUND_TRUTH_COLOUR,
    PREDICTION_COLOUR,
    WARNING_COLOUR,
    WorstCase,
    WorstCaseError,
    render_worst_cases,
    run_caption,
)

SIDE = 96
# A standing figure in the left part of the crop (x right, y down), 17 Human3.6M joints.
GT_XY = np.array(
    [[25, 50], [19, 50], [18, 66], [17, 82], [31, 50], [32, 66], [33, 82], [25, 38], [25, 26],
     [26, 22], [25, 15], [32, 27], [37, 36], [39, 45], [18, 27], [13, 36], [11, 45]], dtype=np.float64,
)  # fmt: skip
# The prediction: the same figure moved to the right half, so no bone of one crosses a joint of the other.
PRED_XY = GT_XY + (48.0, 4.0)
# A block in the crop's bottom-left corner, clear of both skeletons: shows which way up the crop is drawn.
CORNER_ROWS, CORNER_COLUMNS, CORNER_COLOUR = slice(88, 96), slice(0, 12), (250, 200, 0)


def rgb255(colour: str) -> np.ndarray:
    return np.round(np.array(to_rgb(colour)) * 255)


def crop_colour(index: int) -> tuple[int, int, int]:
    """A uniform colour per panel, unlike either skeleton colour, black or white, so each panel can be found."""
    return (30 + 15 * index, 80, 150)


def make_case(index: int, **changes) -> WorstCase:
    crop = np.full((SIDE, SIDE, 3), crop_colour(index), dtype=np.uint8)
    crop[CORNER_ROWS, CORNER_COLUMNS] = CORNER_COLOUR
    fields = {
        "crop": crop, "pred_xy": PRED_XY.copy(), "gt_xy": GT_XY.copy(), "image_id": 5000 + index,
        "action": ACTION_NAMES[index % len(ACTION_NAMES)], "error_mm": 300.0 - 10 * index,
    }  # fmt: skip
    fields.update(changes)
    return WorstCase(**fields)


def decode(png: bytes) -> np.ndarray:
    """The PNG as an RGB array; fails the test if it does not decode."""
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop_box(image: np.ndarray, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pixels with exactly this colour: where a panel's crop was drawn."""
    ys, xs = np.nonzero(np.all(image == np.array(colour), axis=-1))
    assert len(xs), f"no pixel of colour {colour} in the picture"
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def figure_pixel(box: tuple[int, int, int, int], xy: np.ndarray) -> tuple[int, int]:
    """Picture (row, column) of crop coordinates xy (pixel centres at integers, as OpenCV crops are)."""
    left, top, right, bottom = box
    column = left + (xy[0] + 0.5) / SIDE * (right - left + 1)
    row = top + (xy[1] + 0.5) / SIDE * (bottom - top + 1)
    return int(row), int(column)


def near(pixel: np.ndarray, colour: np.ndarray, tolerance: float = 12.0) -> bool:
    return bool(np.abs(pixel.astype(np.float64) - colour).max() <= tolerance)


def near_any(image: np.ndarray, where: tuple[int, int], colour: np.ndarray) -> bool:
    """The colour within one pixel of ``where``: the renderer snaps a marker's centre to the pixel grid."""
    row, column = where
    return any(near(image[row + dy, column + dx], colour) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@pytest.fixture(scope="module")
def twelve() -> np.ndarray:
    return decode(render_worst_cases([make_case(i) for i in range(12)]))


def test_png_starts_with_the_png_signature():
    assert render_worst_cases([make_case(0)])[:8] == b"\x89PNG\r\n\x1a\n"


def test_twelve_cases_fill_a_three_by_four_grid_in_order(twelve):
    boxes = [crop_box(twelve, crop_colour(i)) for i in range(12)]
    lefts = sorted({box[0] for box in boxes})
    tops = sorted({box[1] for box in boxes})
    assert len(lefts) == 4 and len(tops) == 3
    # Row-major: case i sits in row i // 4, column i % 4.
    for i, box in enumerate(boxes):
        assert box[0] == lefts[i % 4] and box[1] == tops[i // 4]
    # Equal, square panels that do not overlap.
    sizes = {(box[2] - box[0], box[3] - box[1]) for box in boxes}
    assert len(sizes) == 1
    width, height = sizes.pop()
    assert abs(width - height) <= 1
    assert all(b - a > width for a, b in pairwise(lefts)) and all(b - a > height for a, b in pairwise(tops))
    assert twelve.shape[1] > twelve.shape[0]  # four columns, three rows: wider than tall


def test_joints_carry_the_two_skeleton_colours(twelve):
    truth, prediction = rgb255(GROUND_TRUTH_COLOUR), rgb255(PREDICTION_COLOUR)
    assert np.abs(truth - prediction).max() > 150  # clearly different colours
    for i in (0, 5, 11):
        box = crop_box(twelve, crop_colour(i))
        for gt, pred in zip(GT_XY, PRED_XY):
            assert near_any(twelve, figure_pixel(box, gt), truth), (i, gt)
            assert near_any(twelve, figure_pixel(box, pred), prediction), (i, pred)
        # Away from both skeletons the crop shows through unchanged, the right way up.
        assert tuple(twelve[figure_pixel(box, np.array([70.0, 8.0]))]) == crop_colour(i)
        assert tuple(twelve[figure_pixel(box, np.array([6.0, 92.0]))]) == CORNER_COLOUR


def test_legend_shows_both_colours_below_the_panels(twelve):
    bottom = max(crop_box(twelve, crop_colour(i))[3] for i in range(12))
    legend_band = twelve[bottom + 1 :]
    for colour in (GROUND_TRUTH_COLOUR, PREDICTION_COLOUR):
        assert np.any(np.all(np.abs(legend_band.astype(float) - rgb255(colour)) <= 12, axis=-1)), colour


def test_fewer_cases_give_fewer_rows_and_joints_off_the_crop_do_not_zoom_out(twelve):
    far_off = PRED_XY.copy()
    far_off[3] = (-400.0, 900.0)  # a wild ankle, far outside the crop
    cases = [make_case(i) for i in range(4)] + [make_case(4, pred_xy=far_off)]
    five = decode(render_worst_cases(cases))
    boxes = [crop_box(five, crop_colour(i)) for i in range(5)]
    assert len({box[1] for box in boxes}) == 2 and len({box[0] for box in boxes}) == 4
    assert boxes[4][0] == boxes[0][0]  # the fifth starts the second row
    assert five.shape[1] == twelve.shape[1] and five.shape[0] < twelve.shape[0]
    # The panel with the wild joint shows the whole crop at the same scale as the others.
    assert {(b[2] - b[0], b[3] - b[1]) for b in boxes} == {(boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1])}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"crop": np.zeros((SIDE, SIDE, 3), dtype=np.float32)}, "crop"),
        ({"crop": np.zeros((SIDE, SIDE // 2, 3), dtype=np.uint8)}, "crop"),
        ({"crop": np.zeros((SIDE, SIDE), dtype=np.uint8)}, "crop"),
        ({"crop": [[0]]}, "crop"),
        ({"pred_xy": np.zeros((18, 2))}, "pred_xy"),
        ({"gt_xy": np.full((17, 2), np.nan)}, "gt_xy"),
    ],
)
def test_malformed_case_is_one_line_naming_the_image(changes, match):
    with pytest.raises(WorstCaseError, match=match) as caught:
        make_case(3, **changes)
    message = str(caught.value)
    assert isinstance(caught.value, EvalError) and "5003" in message and "\n" not in message


@pytest.mark.parametrize("count", [0, 13])
def test_none_or_too_many_cases_are_refused(count):
    with pytest.raises(WorstCaseError, match="1 to 12"):
        render_worst_cases([make_case(i % 12) for i in range(count)])


def _results(**changes) -> dict:
    """The fields of results.json the caption reads."""
    results = {"variant": "L", "protocol": 2, "num_samples": 8695, "use_gt_info": False, "synthetic": False, "oracle": False,
               "checkpoint": {"path": "/ckpts/ConvNeXtPose_L.tar", "sha256": "0123456789abcdef" * 4, "epoch": 83},
               "inference": {"backend": "pytorch", "onnx": None}}  # fmt: skip
    results.update(changes)
    return results


def _title_band(png: bytes) -> np.ndarray:
    """The picture above the first panel's crop: title and caption, without the panels' own titles' colours."""
    image = decode(png)
    _, top, _, _ = crop_box(image, crop_colour(0))
    return image[: top - 40]


def test_caption_names_variant_weights_and_markers():
    from io import BytesIO

    from PIL import Image

    cases = [make_case(i) for i in range(12)]
    png = render_worst_cases(cases, run_caption(_results(synthetic=True, oracle=True)))
    description = Image.open(BytesIO(png)).text["Description"]
    for text in ("ConvNeXtPose-L", "protocol 2", "8695 test images", "RootNet boxes", "ConvNeXtPose_L.tar", "epoch 83",
                 "sha256 0123456789ab", SYNTHETIC_WARNING, ORACLE_WARNING):  # fmt: skip
        assert text in description, text
    red = rgb255(WARNING_COLOUR)
    assert np.all(np.abs(_title_band(png).astype(np.float64) - red) <= 12, axis=-1).sum() > 200, "the markers are drawn in red"
    plain = render_worst_cases(cases, run_caption(_results()))
    assert not np.all(np.abs(_title_band(plain).astype(np.float64) - red) <= 12, axis=-1).any()
    assert SYNTHETIC_WARNING not in Image.open(BytesIO(plain)).text["Description"]


def test_caption_of_an_onnx_run_names_the_exported_file():
    onnx = {"path": "/models/ConvNeXtPose_S.onnx", "sha256": "fedcba9876543210" * 4, "provider": "CPUExecutionProvider"}
    caption = run_caption(_results(variant="S", checkpoint=None, inference={"backend": "onnxruntime", "onnx": onnx}))
    assert caption.lines[1] == "ONNX model ConvNeXtPose_S.onnx (sha256 fedcba987654) on ONNX Runtime, CPUExecutionProvider"
    assert run_caption(_results(checkpoint=None, oracle=True)).lines[1] == "no checkpoint"
