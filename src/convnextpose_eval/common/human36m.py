"""Human3.6M joint set as the checkpoints were trained on it: 17 joints plus Thorax (index 17)."""

from __future__ import annotations

JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck", "Nose",
    "Head", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist", "Thorax",
)  # fmt: skip
JOINT_NUM = len(JOINT_NAMES)
ROOT_INDEX = JOINT_NAMES.index("Pelvis")
L_SHOULDER = JOINT_NAMES.index("L_Shoulder")
R_SHOULDER = JOINT_NAMES.index("R_Shoulder")
# Pairs swapped when the image is mirrored.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 4), (2, 5), (3, 6), (14, 11), (15, 12), (16, 13))
# Errors are reported on the 17 original joints; Thorax is excluded.
EVAL_JOINTS: tuple[int, ...] = tuple(range(17))
EVAL_JOINT_NAMES: tuple[str, ...] = tuple(JOINT_NAMES[j] for j in EVAL_JOINTS)
# Bones for drawing.
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16),
    (0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6),
)  # fmt: skip
# Action index = the two digits after 'act_' in the file name, minus 2.
ACTION_NAMES: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing", "Purchases", "Sitting",
    "SittingDown", "Smoking", "Photo", "Waiting", "Walking", "WalkDog", "WalkTogether",
)  # fmt: skip
# Test subjects per protocol; test frames are those with frame_idx % TEST_FRAME_STRIDE == 0.
PROTOCOL_SUBJECTS: dict[int, tuple[int, ...]] = {1: (11,), 2: (9, 11)}
TEST_SUBJECTS: tuple[int, ...] = PROTOCOL_SUBJECTS[2]
TEST_FRAME_STRIDE = 64
# The depth range the heatmap's depth bins span, in mm, centred on the root.
DEPTH_RANGE_MM = 2000.0


def flip_permutation() -> list[int]:
    """Index map that swaps left and right joints."""
    order = list(range(JOINT_NUM))
    for left, right in FLIP_PAIRS:
        order[left], order[right] = right, left
    return order
