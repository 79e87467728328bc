"""The crop store serves exactly the crops a fresh decode gives, or misses; and the test set is read in batches from it.

Expected crops come from the independent reference (``reference_eval``:
``cv2.imread`` and its own affine warp), never from the store's code. Damage is
done to the store's files directly, the way a crash, a full disk or a bad
sector would leave them.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import sys
from dataclasses import fields, replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import reference_eval as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convnextpose_eval.data import crop_store, crops, h36m
from convnextpose_eval.data.crop_store import CropStore, fresh_crop, store_key
from convnextpose_eval.data.h36m import load_test_index

SIZE = 256
ROW_BYTES = SIZE * SIZE * 3
RECORD_BYTES = 4 + 4 + 6 * 8 + 4 * 8  # checksum, flag, size, mtime, ctime, inode, width, height, box
STORE_ROWS = 8


def _head(index: h36m.TestIndex, count: int) -> h36m.TestIndex:
    return h36m.TestIndex(**{f.name: getattr(index, f.name)[:count] for f in fields(h36m.TestIndex)})


@pytest.fixture()
def data(copy_sample_data, tmp_path: Path) -> SimpleNamespace:
    """A private copy of the sample and the first rows of its protocol-2 GT-box index."""
    root = copy_sample_data(tmp_path / "data")
    index = _head(load_test_index(root, 2, True), STORE_ROWS)
    return SimpleNamespace(root=root, index=index, cache=tmp_path / "cache")


def _store(data: SimpleNamespace, index: h36m.TestIndex | None = None) -> CropStore:
    return CropStore(data.cache, data.root, data.index if index is None else index, "protocol 2, gt", SIZE)


def _reference(data: SimpleNamespace, row: int, index: h36m.TestIndex | None = None) -> np.ndarray:
    index = data.index if index is None else index
    return ref.crop_rgb(ref.read_bgr(data.root / "images" / index.file_name[row]), index.bbox[row])


def _assert_reference_crops(data: SimpleNamespace, rows, patches: np.ndarray) -> None:
    for row, patch in zip(rows, patches):
        expected = _reference(data, int(row))
        assert np.array_equal(patch, expected), f"row {row}: {int((patch != expected).sum())} values differ from a fresh decode"


def _store_folder(data: SimpleNamespace) -> Path:
    (folder,) = [p for p in data.cache.iterdir() if p.is_dir()]
    return folder


def _rewrite_image(path: Path, picture: np.ndarray) -> None:
    """New content at ``path``, with an mtime that surely differs from the old one."""
    stat = path.stat()
    assert cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 3_000_000_000))


ALL = list(range(STORE_ROWS))


# --------------------------------------------------------------------------- hits and misses


def test_cold_then_warm_reads_equal_fresh_crops_bit_for_bit(data) -> None:
    store = _store(data)
    patches, hits = store.fetch(ALL)
    assert not hits.any()
    _assert_reference_crops(data, ALL, patches)
    patches, hits = store.fetch(ALL)
    assert hits.all()
    _assert_reference_crops(data, ALL, patches)
    # another run (a new instance on the same folder), in another order and grouping
    rows = [5, 2, 7, 0]
    patches, hits = _store(data).fetch(rows)
    assert hits.all()
    _assert_reference_crops(data, rows, patches)


def test_zeroed_patch_behind_a_valid_row_is_a_miss_and_is_recomputed(data) -> None:
    _store(data).fetch(ALL)
    with open(_store_folder(data) / crop_store.PATCHES_FILE, "r+b") as handle:
        handle.seek(3 * ROW_BYTES)
        handle.write(bytes(ROW_BYTES))
    store = _store(data)
    patches, hits = store.fetch(ALL)
    assert hits.tolist() == [row != 3 for row in ALL]
    _assert_reference_crops(data, ALL, patches)
    assert store.fetch(ALL)[1].all(), "the damaged row is stored again"


def test_every_row_record_zeroed_is_a_miss(data) -> None:
    _store(data).fetch(ALL)
    records = _store_folder(data) / crop_store.ROWS_FILE
    records.write_bytes(bytes(records.stat().st_size))
    patches, hits = _store(data).fetch(ALL)
    assert not hits.any()
    _assert_reference_crops(data, ALL, patches)


@pytest.mark.parametrize("change", ["new_content", "touched", "replaced_same_size_and_mtime"])
def test_changed_image_file_is_a_miss(data, change: str) -> None:
    store = _store(data)
    store.fetch(ALL)
    path = data.root / "images" / data.index.file_name[2]
    before = path.stat()
    if change == "new_content":
        _rewrite_image(path, cv2.flip(ref.read_bgr(path), 1))
    elif change == "touched":  # same bytes, only a new mtime
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    else:  # another file put in its place, same size and mtime: only the inode tells
        twin = path.with_name("twin.jpg")
        shutil.copyfile(path, twin)
        os.utime(twin, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(twin, path)
        after = path.stat()
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns) and after.st_ino != before.st_ino
    patches, hits = _store(data).fetch(ALL)
    assert hits.tolist() == [row != 2 for row in ALL]
    _assert_reference_crops(data, ALL, patches)


def test_image_replaced_while_it_is_read_never_stands_for_the_new_file(data, monkeypatch) -> None:
    """The old CropCache keyed the crop on the file's stat taken after decoding: the old crop then passed for the new file."""
    from convnextpose_eval.data import images

    path = data.root / "images" / data.index.file_name[4]
    old_crop = _reference(data, 4)
    replacement = cv2.flip(ref.read_bgr(path), 0)
    original_decode = images.decode_image

    def decode_while_replaced(raw: bytes, image_path: Path, width: int, height: int) -> np.ndarray:
        if Path(image_path) == path and not path.with_name("done").exists():
            path.with_name("done").touch()
            _rewrite_image(path, replacement)  # lands after the stat and the read, before the crop is stored
        return original_decode(raw, image_path, width, height)

    monkeypatch.setattr(images, "decode_image", decode_while_replaced)
    patches, _ = _store(data).fetch([4])
    assert np.array_equal(patches[0], old_crop), "this run crops the bytes it read"
    monkeypatch.setattr(images, "decode_image", original_decode)
    patches, hits = _store(data).fetch([4])
    assert not hits[0], "the crop stored during the replacement must not be served for the new file"
    assert np.array_equal(patches[0], _reference(data, 4))
    assert not np.array_equal(patches[0], old_crop)


def test_changed_box_is_a_miss_for_that_row_only(data) -> None:
    _store(data).fetch(ALL)
    bbox = data.index.bbox.copy()
    bbox[1, 0] += 0.5
    moved = replace(data.index, bbox=bbox)
    patches, hits = _store(data, moved).fetch(ALL)
    assert hits.tolist() == [row != 1 for row in ALL]
    for row in ALL:
        assert np.array_equal(patches[row], _reference(data, row, moved)), row


def _edited_crop_transform(bbox: np.ndarray, size: int, _original=crops.crop_transform) -> np.ndarray:
    """crop_transform after an edit that changed its source (here: nothing else)."""
    return _original(bbox, size)


@pytest.mark.parametrize("change", ["version", "crop_code", "opencv"])
def test_new_crop_format_version_crop_code_or_opencv_is_a_miss(data, monkeypatch, change: str) -> None:
    _store(data).fetch(ALL)
    if change == "version":
        monkeypatch.setattr(crop_store, "CROP_FORMAT_VERSION", crop_store.CROP_FORMAT_VERSION + 1)
    elif change == "crop_code":  # an edit to crop_transform without a version bump
        monkeypatch.setattr(crops, "crop_transform", _edited_crop_transform)
    else:
        monkeypatch.setattr(crop_store.cv2, "__version__", "0.0.0-other")
    patches, hits = _store(data).fetch(ALL)
    assert not hits.any()
    _assert_reference_crops(data, ALL, patches)


def test_store_key_separates_data_roots_box_sources_sizes_and_image_lists(data, tmp_path: Path) -> None:
    names = data.index.file_name.tolist()
    base = store_key(data.root, "protocol 2, gt", SIZE, names)
    others = {
        store_key(tmp_path / "elsewhere", "protocol 2, gt", SIZE, names),
        store_key(data.root, "protocol 2, rootnet", SIZE, names),
        store_key(data.root, "protocol 2, gt", 192, names),
        store_key(data.root, "protocol 2, gt", SIZE, names[::-1]),
        store_key(data.root, "protocol 2, gt", SIZE, names[:-1]),
    }
    assert base not in others and len(others) == 5
    assert store_key(data.root, "protocol 2, gt", SIZE, list(names)) == base


def test_store_that_cannot_be_created_only_costs_speed(data) -> None:
    data.cache.write_text("a file where the store's folder should be")
    store = _store(data)
    for _ in range(2):
        patches, hits = store.fetch([0, 6])
        assert not hits.any()
        _assert_reference_crops(data, [0, 6], patches)
    assert not store.is_warm([0, 6])


# --------------------------------------------------------------------------- damage anywhere is a miss


class FilledStore:
    """A filled store's folder, its files' pristine bytes and the crops it must serve (short repr for Hypothesis)."""

    def __init__(self, data: SimpleNamespace) -> None:
        _store(data).fetch(ALL)
        self.data = data
        self.folder = _store_folder(data)
        self.pristine = {path.name: path.read_bytes() for path in sorted(self.folder.iterdir())}
        self.expected = np.stack([_reference(data, row) for row in ALL])

    def __repr__(self) -> str:
        return f"FilledStore({self.folder})"


@pytest.fixture()
def filled(data) -> FilledStore:
    store = FilledStore(data)
    assert set(store.pristine) == {crop_store.PATCHES_FILE, crop_store.ROWS_FILE, crop_store.KEY_FILE}
    return store


def _damaged_rows(name: str, before: bytes, after: bytes) -> set[int]:
    """Rows whose bytes in ``name`` differ (none for key.json, which describes the store for people)."""
    changed = np.flatnonzero(np.frombuffer(before, np.uint8) != np.frombuffer(after, np.uint8))
    if name == crop_store.PATCHES_FILE:
        return set((changed // ROW_BYTES).tolist())
    if name == crop_store.ROWS_FILE:
        return set((changed // RECORD_BYTES).tolist())
    return set()


damage = st.lists(
    st.tuples(
        st.sampled_from([crop_store.PATCHES_FILE, crop_store.ROWS_FILE, crop_store.KEY_FILE]),
        st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
        st.integers(min_value=1, max_value=255),
        st.sampled_from([1, 1, 1, 8, 600]),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=damage)
def test_random_damage_anywhere_in_the_store_never_changes_a_served_crop(filled, changes) -> None:
    contents = {name: bytearray(content) for name, content in filled.pristine.items()}
    for name, position, mask, length in changes:
        content = contents[name]
        start = int(position * len(content))
        for offset in range(start, min(start + length, len(content))):
            content[offset] ^= mask
    damaged: set[int] = set()
    for name, content in contents.items():
        (filled.folder / name).write_bytes(bytes(content))
        damaged |= _damaged_rows(name, filled.pristine[name], bytes(content))
    patches, hits = _store(filled.data).fetch(ALL)
    assert np.array_equal(patches, filled.expected)
    assert not any(hits[row] for row in damaged), f"damaged rows {sorted(damaged)} served as hits: {hits.tolist()}"


# --------------------------------------------------------------------------- concurrent writers


def _write_rows_repeatedly(store: CropStore, rounds: int, start: multiprocessing.synchronize.Barrier, stale: bool) -> None:
    """Another job filling the same store, every row again and again. A ``stale`` job read an older
    version of each image: other pixels (mirrored), stored under that version's identity."""
    index = store.index
    made = []
    for row in range(len(index)):
        width, height = (int(v) for v in index.image_size[row])
        patch, (size, mtime_ns, ctime_ns, inode) = fresh_crop(Path(store.image_paths[row]), index.bbox[row], width, height, store.input_size)
        made.append((np.ascontiguousarray(patch[:, ::-1]), (size, mtime_ns - 1, ctime_ns, inode)) if stale else (patch, (size, mtime_ns, ctime_ns, inode)))
    start.wait()
    for _ in range(rounds):
        for row, (patch, identity) in enumerate(made):
            store.put(row, patch, identity)


def test_concurrent_writers_and_a_reader_only_ever_see_consistent_rows(data) -> None:
    """Two processes write every row at once, one current and one stale; a third reads meanwhile.

    Whatever the interleaving, a row holds one writer's pixels with that writer's key (a hit only for the
    current one) or fails its checksum (a miss): the reader always gets the current image's crop.
    """
    store = _store(data)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    writers = [context.Process(target=_write_rows_repeatedly, args=(store, 150, start, stale)) for stale in (False, True)]
    for writer in writers:
        writer.start()
    expected = np.stack([_reference(data, row) for row in ALL])
    start.wait(timeout=120)
    reads = 0
    while any(writer.is_alive() for writer in writers):
        patches, _ = store.fetch(ALL)
        assert np.array_equal(patches, expected), f"read {reads}: a row was served that is not the current image's crop"
        reads += 1
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    assert reads > 1
    patches, _ = _store(data).fetch(ALL)  # the last writer's rows: the stale job's ones miss and are replaced
    assert np.array_equal(patches, expected)
    patches, hits = _store(data).fetch(ALL)
    assert hits.all() and np.array_equal(patches, expected)


# --------------------------------------------------------------------------- the test set in batches


def _datamodule(data: SimpleNamespace, batch_size: int, workers: int):
    from convnextpose_eval.data.datamodule import H36MDataModule

    module = H36MDataModule(
        root=str(data.root), protocol=2, use_gt_info=True, input_size=SIZE, batch_size=batch_size,
        num_workers=workers, pin_memory=False, crop_cache_dir=str(data.cache), index_cache_dir=None,
    )  # fmt: skip
    module.setup("test")
    return module


BATCH_KEYS = {"image", "index", "image_id", "action", "subject", "bbox", "root_cam", "joint_cam", "focal", "center", "cached"}


def test_batches_hold_the_crops_and_the_index_rows_including_the_subject(data) -> None:
    import torch

    module = _datamodule(data, batch_size=16, workers=0)
    index = load_test_index(data.root, 2, True)
    batches = list(module.test_dataloader())
    assert [len(b["index"]) for b in batches] == [16, 16, 16, 1]
    for batch in batches:
        assert set(batch) == BATCH_KEYS
        rows = batch["index"].numpy()
        assert batch["subject"].dtype == torch.int64
        assert batch["subject"].tolist() == index.subject[rows].tolist()
        assert set(batch["subject"].tolist()) <= {9, 11}
        assert batch["image_id"].tolist() == index.image_id[rows].tolist()
        assert batch["action"].tolist() == index.action[rows].tolist()
        for key in ("bbox", "root_cam", "joint_cam", "focal", "center"):
            assert batch[key].dtype == torch.float64
            np.testing.assert_array_equal(batch[key].numpy(), getattr(index, key)[rows])
        assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (len(rows), 3, SIZE, SIZE)
        for row, image in zip(rows[:3], batch["image"]):
            expected = ref.crop_rgb(ref.read_bgr(data.root / "images" / index.file_name[row]), index.bbox[row])
            assert np.array_equal(image.permute(1, 2, 0).numpy(), expected)
    assert {s for b in batches for s in b["subject"].tolist()} == {9, 11}


def test_each_batch_is_one_read_of_the_store(data, monkeypatch) -> None:
    calls: list[list[int]] = []
    original = CropStore.fetch

    def counting_fetch(self, rows):
        calls.append([int(r) for r in rows])
        return original(self, rows)

    monkeypatch.setattr(CropStore, "fetch", counting_fetch)
    batches = list(_datamodule(data, batch_size=16, workers=0).test_dataloader())
    assert len(calls) == len(batches) == 4
    assert calls[0] == list(range(16)) and calls[-1] == [48]


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_cover_every_image_exactly_once(data, world_size: int) -> None:
    module = _datamodule(data, batch_size=5, workers=0)
    seen = []
    for rank in range(world_size):
        module.trainer = SimpleNamespace(global_rank=rank, world_size=world_size)
        seen += [i for batch in module.test_dataloader() for i in batch["index"].tolist()]
    assert sorted(seen) == list(range(49))


def test_cold_store_is_filled_by_workers_and_a_warm_one_is_read_without_them(data) -> None:
    module = _datamodule(data, batch_size=8, workers=2)
    cold = module.test_dataloader()
    assert cold.num_workers == min(2, os.cpu_count() or 1)
    first = list(cold)
    assert not any(b["cached"].any() for b in first)
    warm = module.test_dataloader()
    assert warm.num_workers == 0
    second = list(warm)
    assert all(b["cached"].all() for b in second)
    for a, b in zip(first, second):
        assert a["index"].tolist() == b["index"].tolist()
        assert np.array_equal(a["image"].numpy(), b["image"].numpy())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is the workers' start method on Linux only")
def test_workers_are_forked_even_where_the_process_default_is_spawn(data) -> None:
    """A DDP rank started by spawning inherits "spawn" as its default: its DataLoader workers must still be
    forked, not fresh interpreters that import torch and Lightning again (docs/speed.md)."""
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        loader = _datamodule(data, batch_size=8, workers=2).test_dataloader()
        assert loader.num_workers == min(2, os.cpu_count() or 1)
        assert loader.multiprocessing_context.get_start_method() == "fork"
        served = [b["index"].tolist() for b in loader]
    finally:
        multiprocessing.set_start_method(before, force=True)
    assert [row for rows in served for row in rows] == list(range(49))
