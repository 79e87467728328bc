"""An independent re-implementation of the authors' Human3.6M test-time evaluation, for agreement tests.

What it re-implements (3DMPPE PoseNet / ConvNeXtPose release; docs/protocol.md):
``Human36M.load_data`` and ``Human36M.evaluate``, the test branch of
``DatasetLoader.__getitem__`` with ``generate_patch_image`` /
``gen_trans_from_patch_cv`` (no augmentation), the torchvision
``ToTensor`` + ``Normalize`` transform, ``soft_argmax`` and the flip test of
``main/test.py``, and ``pose_utils`` (``process_bbox``, ``world2cam``,
``pixel2cam``, ``rigid_align``).

It is written on purpose unlike the project's pipeline: one sample at a time,
plain numpy for every piece of geometry and every metric, the soft-argmax in
float64 numpy on the raw heatmaps, the flip test as a second forward of its own.
The only things taken from ``convnextpose_eval`` are the network class and the
checkpoint loader, because the network itself is verified elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ACTIONS = [
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing", "Purchases", "Sitting",
    "SittingDown", "Smoking", "Photo", "Waiting", "Walking", "WalkDog", "WalkTogether",
]  # fmt: skip
TEST_SUBJECTS = {1: [11], 2: [9, 11]}
FRAME_STEP = 64
N_JOINTS = 18  # 17 annotated + Thorax
PELVIS, LEFT_SHOULDER, RIGHT_SHOULDER, THORAX = 0, 11, 14, 17
MIRROR_PAIRS = [(1, 4), (2, 5), (3, 6), (14, 11), (15, 12), (16, 13)]
PATCH = 256  # network input side
BOX_3D_DEPTH = 2000.0  # mm spanned by the depth bins
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- reading the test set


@dataclass
class Sample:
    image_id: int
    file_name: str
    bbox: np.ndarray  # (4,) x, y, w, h of the crop box in the image
    root_cam: np.ndarray  # (3,) root used for depth (GT pelvis, or RootNet's)
    gt_cam: np.ndarray  # (18, 3) float32, mm, camera space
    focal: np.ndarray  # (2,) float32
    princpt: np.ndarray  # (2,) float32
    action: int
    extra: dict[str, Any] = field(default_factory=dict)


def sanitize_box(xywh: list[float] | np.ndarray, img_w: int, img_h: int) -> np.ndarray | None:
    """The authors' process_bbox: clamp to the image, make square (input is 1:1), enlarge x1.25.

    Written with Python floats (IEEE doubles, same operations in the same order).
    """
    bx, by, bw, bh = (float(v) for v in xywh)
    left = bx if bx > 0 else 0.0
    top = by if by > 0 else 0.0
    right = min(float(img_w - 1), left + (bw - 1 if bw - 1 > 0 else 0.0))
    bottom = min(float(img_h - 1), top + (bh - 1 if bh - 1 > 0 else 0.0))
    if not (bw * bh > 0 and right >= left and bottom >= top):
        return None
    width, height = right - left, bottom - top
    mid_x, mid_y = left + width / 2.0, top + height / 2.0
    ratio = PATCH / PATCH
    if width > ratio * height:
        height = width / ratio
    elif width < ratio * height:
        width = height * ratio
    out_w, out_h = width * 1.25, height * 1.25
    return np.array([mid_x - out_w / 2.0, mid_y - out_h / 2.0, out_w, out_h], dtype=np.float64)


def _coco_merge(annotation_dir: Path, subjects: list[int]) -> tuple[dict, dict]:
    """What ``COCO()`` + ``dataset[k] += v`` + ``createIndex`` give: anns and imgs keyed by id, in list order."""
    merged: dict[str, list] = {}
    for s in subjects:
        with open(annotation_dir / f"Human36M_subject{s}_data.json") as fh:
            part = json.load(fh)
        for key, value in part.items():
            merged[key] = merged.get(key, []) + list(value)
    anns: dict[Any, dict] = {}
    for a in merged.get("annotations", []):
        anns[a["id"]] = a
    imgs: dict[Any, dict] = {}
    for im in merged.get("images", []):
        imgs[im["id"]] = im
    return anns, imgs


def action_of(file_name: str) -> int:
    at = file_name.find("act")
    return int(file_name[at + 4 : at + 6]) - 2


def load_samples(data_root: str | Path, protocol: int, use_gt_info: bool) -> list[Sample]:
    """Test samples in the authors' order: annotation order of the merged subject files."""
    data_root = Path(data_root)
    ann_dir = data_root / "annotations"
    subjects = TEST_SUBJECTS[protocol]
    anns, imgs = _coco_merge(ann_dir, subjects)
    cams, worlds = {}, {}
    for s in subjects:
        with open(ann_dir / f"Human36M_subject{s}_camera.json") as fh:
            cams[s] = json.load(fh)
        with open(ann_dir / f"Human36M_subject{s}_joint_3d.json") as fh:
            worlds[s] = json.load(fh)
    rootnet = None
    if not use_gt_info:
        with open(data_root / "bbox_root" / "bbox_root_human36m_output.json") as fh:
            rootnet = {str(e["image_id"]): (np.array(e["bbox"]), np.array(e["root_cam"])) for e in json.load(fh)}

    out: list[Sample] = []
    for ann_id in anns:
        ann = anns[ann_id]
        img = imgs[ann["image_id"]]
        s = img["subject"]
        if s not in subjects or img["frame_idx"] % FRAME_STEP != 0:
            continue
        cam = cams[s][str(img["cam_idx"])]
        rot = np.array(cam["R"], dtype=np.float32).reshape(3, 3)
        trans = np.array(cam["t"], dtype=np.float32).reshape(3)
        focal = np.array(cam["f"], dtype=np.float32).reshape(2)
        princpt = np.array(cam["c"], dtype=np.float32).reshape(2)
        world17 = np.array(worlds[s][str(img["action_idx"])][str(img["subaction_idx"])][str(img["frame_idx"])], dtype=np.float32)
        world = np.zeros((N_JOINTS, 3), dtype=np.float32)
        world[:17] = world17
        world[THORAX] = (world17[LEFT_SHOULDER] + world17[RIGHT_SHOULDER]) * np.float32(0.5)
        gt_cam = np.zeros((N_JOINTS, 3), dtype=np.float32)
        for j in range(N_JOINTS):  # X_cam = R X_world + t, joint by joint
            gt_cam[j] = rot @ world[j] + trans
        if rootnet is not None:
            bbox, root = rootnet[str(ann["image_id"])]
            bbox = bbox.astype(np.float64)
            root = root.astype(np.float64)
        else:
            bbox = sanitize_box(ann["bbox"], img["width"], img["height"])
            if bbox is None:
                continue
            root = gt_cam[PELVIS].astype(np.float64)
        out.append(
            Sample(
                image_id=int(ann["image_id"]), file_name=img["file_name"], bbox=bbox, root_cam=root,
                gt_cam=gt_cam, focal=focal, princpt=princpt, action=action_of(img["file_name"]),
            )
        )  # fmt: skip
    return out


# ----------------------------------------------------------------------------- image to network input


def box_affine(bbox: np.ndarray, side: int = PATCH) -> np.ndarray:
    """2x3 map from three float32 point pairs: box centre, centre + half height down, centre + half width right."""
    cx = np.float32(float(bbox[0] + 0.5 * bbox[2]))
    cy = np.float32(float(bbox[1] + 0.5 * bbox[3]))
    half_w = np.float32(float(bbox[2]) * 1.0 * 0.5)
    half_h = np.float32(float(bbox[3]) * 1.0 * 0.5)
    src = np.empty((3, 2), dtype=np.float32)
    src[0] = (cx, cy)
    src[1] = (cx, np.float32(cy + half_h))
    src[2] = (np.float32(cx + half_w), cy)
    mid = np.float32(side * 0.5)
    dst = np.array([[mid, mid], [mid, mid + mid], [mid + mid, mid]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst)


def crop_rgb(image_bgr: np.ndarray, bbox: np.ndarray, side: int = PATCH) -> np.ndarray:
    """uint8 (side, side, 3) RGB patch: affine warp of the BGR image, bilinear, zero border, then BGR -> RGB."""
    warped = cv2.warpAffine(image_bgr, box_affine(bbox, side), (side, side), flags=cv2.INTER_LINEAR)
    rgb = np.empty_like(warped)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = warped[..., 2], warped[..., 1], warped[..., 0]
    return rgb


def read_bgr(path: str | Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise IOError(f"cannot read {path}")
    return img


def to_network_input(patch_rgb: np.ndarray) -> np.ndarray:
    """float32 CHW: 0..255 values minus mean, over std (ToTensor does not rescale a float array)."""
    chw = np.ascontiguousarray(patch_rgb.astype(np.float32).transpose(2, 0, 1))
    for ch in range(3):
        chw[ch] = (chw[ch] - np.float32(MEAN_RGB[ch])) / np.float32(STD_RGB[ch])
    return chw


# ----------------------------------------------------------------------------- network


def _np_soft_argmax(heatmaps: np.ndarray, n_joints: int) -> np.ndarray:
    """(B, J*D, H, W) logits -> (B, J, 3) expected (x, y, z), softmax over each joint's whole volume, float64."""
    b, c, h, w = heatmaps.shape
    d = c // n_joints
    out = np.zeros((b, n_joints, 3))
    for i in range(b):
        for j in range(n_joints):
            logits = heatmaps[i, j * d : (j + 1) * d].astype(np.float64)
            prob = np.exp(logits - logits.max())
            prob /= prob.sum()
            out[i, j, 0] = prob.sum(axis=(0, 1)) @ np.arange(w, dtype=np.float64)
            out[i, j, 1] = prob.sum(axis=(0, 2)) @ np.arange(h, dtype=np.float64)
            out[i, j, 2] = prob.sum(axis=(1, 2)) @ np.arange(d, dtype=np.float64)
    return out


class ReferenceNetwork:
    """The released network with its weights; heatmaps from torch, soft-argmax here in numpy."""

    def __init__(self, ckpt_path: str | Path, variant_yaml: str | Path, conf_dir: str | Path) -> None:
        import torch
        from omegaconf import OmegaConf

        from convnextpose_eval.checkpoint.architecture import load_weights, resolve_arch
        from convnextpose_eval.checkpoint.reader import read_checkpoint
        from convnextpose_eval.network import ArchSpec, ConvNeXtPose

        def as_dict(p: Path) -> dict:
            return OmegaConf.to_container(OmegaConf.load(p), resolve=True)

        known = {}
        for p in sorted(Path(conf_dir, "variant").glob("*.yaml")):
            node = as_dict(p)
            if node.get("backbone", {}).get("dims") is not None:
                known[node["name"]] = ArchSpec.from_variant(node)
        ckpt = read_checkpoint(ckpt_path)
        arch = resolve_arch(ckpt, as_dict(Path(variant_yaml)), known)
        self.net = ConvNeXtPose(arch)
        load_weights(self.net, ckpt)
        self.net.eval()
        self.joints = arch.joint_num
        self._torch = torch

    def coords(self, inputs: np.ndarray) -> np.ndarray:
        """(B, 3, 256, 256) float32 normalized -> (B, J, 3) heatmap-space coordinates; also sets heatmap dims."""
        torch = self._torch
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(inputs))
            heat = self.net.head(self.net.backbone(x)).float().numpy()
        self.depth_bins, self.hm_h, self.hm_w = heat.shape[1] // self.joints, heat.shape[2], heat.shape[3]
        return _np_soft_argmax(heat, self.joints)


def unmirror(coords: np.ndarray, hm_w: int) -> np.ndarray:
    """Coordinates predicted on the mirrored patch, mapped back: x -> W - 1 - x, left/right swapped."""
    back = coords.copy()
    back[:, 0] = hm_w - 1 - back[:, 0]
    for a, b in MIRROR_PAIRS:
        back[[a, b]] = back[[b, a]]
    return back


# ----------------------------------------------------------------------------- evaluation


def kabsch_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Best rotation + translation (no scale) of pred onto gt, reflection excluded (3DMPPE rigid_align)."""
    p = pred.astype(np.float64)
    g = gt.astype(np.float64)
    mp, mg = p.mean(axis=0), g.mean(axis=0)
    cov = (p - mp).T @ (g - mg)
    u, _, vt = np.linalg.svd(cov)
    fix = np.eye(3)
    fix[2, 2] = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ fix @ u.T
    return (rot @ (p - mp).T).T + mg


def back_project(coords: np.ndarray, s: Sample, hm_w: int, hm_h: int, depth_bins: int) -> np.ndarray:
    """Heatmap coordinates (18, 3) -> camera space mm, via the crop box, the root depth and the pinhole model."""
    out = np.zeros((coords.shape[0], 3))
    for j, (x, y, z) in enumerate(coords):
        u = x / hm_w * s.bbox[2] + s.bbox[0]
        v = y / hm_h * s.bbox[3] + s.bbox[1]
        depth = (z / depth_bins * 2.0 - 1.0) * (BOX_3D_DEPTH / 2.0) + s.root_cam[2]
        out[j, 0] = (u - s.princpt[0]) / s.focal[0] * depth
        out[j, 1] = (v - s.princpt[1]) / s.focal[1] * depth
        out[j, 2] = depth
    return out


class RawOutputCache:
    """Per (image, box): network output on the patch and on its mirror, so flip/no-flip and P1/P2 share forwards."""

    def __init__(self, network: ReferenceNetwork, data_root: Path, batch: int = 8) -> None:
        self.network, self.data_root, self.batch = network, Path(data_root), batch
        self.table: dict[tuple[str, bytes], tuple[np.ndarray, np.ndarray]] = {}

    def fill(self, samples: list[Sample]) -> None:
        todo = [s for s in samples if (s.file_name, s.bbox.tobytes()) not in self.table]
        for start in range(0, len(todo), self.batch):
            chunk = todo[start : start + self.batch]
            inputs = np.stack([to_network_input(crop_rgb(read_bgr(self.data_root / "images" / s.file_name), s.bbox)) for s in chunk])
            plain = self.network.coords(inputs)
            mirrored = self.network.coords(inputs[:, :, :, ::-1].copy())  # a separate forward on the mirrored input
            for k, s in enumerate(chunk):
                self.table[(s.file_name, s.bbox.tobytes())] = (plain[k], mirrored[k])

    def get(self, s: Sample) -> tuple[np.ndarray, np.ndarray]:
        return self.table[(s.file_name, s.bbox.tobytes())]


@dataclass
class ReferenceResult:
    mpjpe: float
    pa_mpjpe: float
    per_action_mpjpe: dict[str, float | None]
    per_action_pa: dict[str, float | None]
    per_action_count: dict[str, int]
    image_ids: list[int]
    pred_rel: list[np.ndarray]  # per sample, (17, 3) root-relative, not aligned
    bboxes: list[np.ndarray]
    roots: list[np.ndarray]
    num_samples: int


def evaluate(samples: list[Sample], cache: RawOutputCache, flip_test: bool) -> ReferenceResult:
    cache.fill(samples)
    net = cache.network
    err_plain = np.zeros((len(samples), 17))
    err_pa = np.zeros((len(samples), 17))
    preds = []
    for n, s in enumerate(samples):
        plain, mirrored = cache.get(s)
        coords = (plain + unmirror(mirrored, net.hm_w)) / 2.0 if flip_test else plain.copy()
        cam = back_project(coords, s, net.hm_w, net.hm_h, net.depth_bins)
        pred_rel = cam - cam[PELVIS]
        gt_rel = s.gt_cam.astype(np.float64) - s.gt_cam[PELVIS].astype(np.float64)
        aligned = kabsch_align(pred_rel, gt_rel)  # fitted on all 18 joints, Thorax included
        for j in range(17):  # Thorax (17) is excluded from the error only
            err_plain[n, j] = np.sqrt(np.sum((pred_rel[j] - gt_rel[j]) ** 2))
            err_pa[n, j] = np.sqrt(np.sum((aligned[j] - gt_rel[j]) ** 2))
        preds.append(pred_rel[:17])
    per_mp, per_pa, per_n = {}, {}, {}
    for a, name in enumerate(ACTIONS):
        rows = [n for n, s in enumerate(samples) if s.action == a]
        per_n[name] = len(rows)
        per_mp[name] = float(np.mean(err_plain[rows])) if rows else None
        per_pa[name] = float(np.mean(err_pa[rows])) if rows else None
    return ReferenceResult(
        mpjpe=float(np.mean(err_plain)), pa_mpjpe=float(np.mean(err_pa)),
        per_action_mpjpe=per_mp, per_action_pa=per_pa, per_action_count=per_n,
        image_ids=[s.image_id for s in samples], pred_rel=preds,
        bboxes=[s.bbox for s in samples], roots=[s.root_cam for s in samples], num_samples=len(samples),
    )  # fmt: skip
