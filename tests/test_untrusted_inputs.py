"""Inputs the tool cannot vouch for, through the real entry point (run_eval.py's Hydra task, in this
process): each is exit status 2, one ``error:`` line naming the file and what is wrong, and no
results.json. Inputs that only look changed give a clean run's numbers, to 1e-9 mm."""

from __future__ import annotations

import json
import os
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from figures import assert_same_figures
from inprocess import read_json, run_in_process
from killed_writes import clean_files, write_killed_by_file_size_limit

from convnextpose_eval.data.crop_store import CropStore
from convnextpose_eval.data.h36m import load_test_index

pytestmark = pytest.mark.slow

S11_DATA = "annotations/Human36M_subject11_data.json"
S11_CAMERA = "annotations/Human36M_subject11_camera.json"


@pytest.fixture(scope="module")
def ckpt(synthetic_sample) -> Path:
    return synthetic_sample / "checkpoints" / "ConvNeXtPose_XS.tar"


def xs_args(data: Path, out: Path, cache: Path, ckpt: Path, *extra: str) -> tuple[str, ...]:
    """XS on protocol 1 (the 23 S11 test images of the sample), GT boxes, no worker processes; the PyTorch
    engine, so that the only files a run writes are its own results (no export into the cache)."""
    return ("variant=XS", f"ckpt_path={ckpt}", "backend=pytorch", "data=h36m", f"data.root={data}", "data.protocol=1", "data.num_workers=0",
            f"paths.cache_dir={cache}", f"hydra.run.dir={out}", *extra)  # fmt: skip


def edit_json(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def first_s11_test_image(document: dict) -> dict:
    return next(image for image in document["images"] if image["subject"] == 11 and image["frame_idx"] % 64 == 0)


def assert_refused(run, out: Path, *names: str, problem: str) -> str:
    """Exit 2, exactly one error line naming ``names`` and saying ``problem``, no traceback, no results."""
    assert run.returncode == 2, run.describe()
    assert len(run.error_lines) == 1, run.describe()
    assert "Traceback" not in run.stderr, run.describe()
    line = run.error_lines[0]
    for name in names:
        assert name in line, f"the line must name {name!r}: {line}"
    assert problem in line, f"the line must say {problem!r}: {line}"
    assert not (out / "results.json").exists() and not (out / "predictions.json").exists()
    return line


@pytest.fixture()
def data(copy_sample_data, tmp_path) -> Path:
    return copy_sample_data(tmp_path / "data")


@pytest.fixture(scope="module")
def clean_folder(synthetic_sample, ckpt, tmp_path_factory) -> Path:
    """The folder of a clean run on a private copy of the sample: what a recovered or rerun run must give back."""
    root = tmp_path_factory.mktemp("clean")
    data = root / "data"
    shutil.copytree(synthetic_sample, data, ignore=shutil.ignore_patterns("checkpoints"))
    with pytest.MonkeyPatch.context() as patch:
        run = run_in_process(patch, root, *xs_args(data, root / "out", root / "cache", ckpt))
    assert run.returncode == 0, run.describe()
    return root / "out"


@pytest.fixture(scope="module")
def clean_run(clean_folder) -> dict:
    return read_json(clean_folder / "results.json")


# --------------------------------------------------------------------------- checkpoints (rows 1-4)


def _twin(folder: Path, ckpt: Path) -> tuple[Path, tuple[str, ...]]:
    network = dict(torch.load(ckpt, map_location="cpu", weights_only=True)["network"])
    modern = next(key for key in network if key.endswith("head.deconv_layers_1.dwconv.weight"))
    twin = modern.replace(".dwconv.", ".0.")
    network[twin] = network[modern] + 1.0
    path = folder / "twin.tar"
    torch.save({"epoch": 68, "network": network}, path)
    return path, (modern, twin)


def _two_sets(folder: Path, ckpt: Path) -> tuple[Path, tuple[str, ...]]:
    network = dict(torch.load(ckpt, map_location="cpu", weights_only=True)["network"])
    path = folder / "two_sets.tar"
    torch.save({"epoch": 68, "network": network, "state_dict": {k: v * 0.5 for k, v in network.items()}}, path)
    return path, ("'network'", "'state_dict'", "two weight sets")


def _unzipped(folder: Path, ckpt: Path) -> Path:
    with zipfile.ZipFile(ckpt) as archive:
        archive.extractall(folder / "unzipped")
    (root,) = (folder / "unzipped").iterdir()
    return root


def _fifo_entry(folder: Path, ckpt: Path) -> tuple[Path, tuple[str, ...]]:
    root = _unzipped(folder, ckpt)
    (root / "version").unlink()
    os.mkfifo(root / "version")
    return root, ("'version'", "FIFO")


def _dev_zero_entry(folder: Path, ckpt: Path) -> tuple[Path, tuple[str, ...]]:
    root = _unzipped(folder, ckpt)
    (root / "version").unlink()
    (root / "version").symlink_to("/dev/zero")
    return root, ("'version'", "/dev/zero", "outside the checkpoint folder")


@pytest.mark.parametrize("make", [_twin, _two_sets, _fifo_entry, _dev_zero_entry], ids=["legacy_twin", "two_weight_sets", "fifo_entry", "dev_zero_entry"])
def test_a_checkpoint_the_tool_cannot_vouch_for_is_one_line(make, tmp_path, data, ckpt, monkeypatch) -> None:
    path, names = make(tmp_path, ckpt)
    out = tmp_path / "out"
    run = run_in_process(monkeypatch, tmp_path, *xs_args(data, out, tmp_path / "cache", path))
    assert_refused(run, out, str(path), *names[:-1], problem=names[-1])
    assert not (tmp_path / "cache").exists(), "refused before any data is read"


# --------------------------------------------------------------------------- annotation records (rows 9-12)


def _scaled_rotation(data: Path) -> tuple[str, ...]:
    edit_json(data / S11_CAMERA, lambda cams: [cam.update(R=(np.array(cam["R"]) * 1.5).tolist()) for cam in cams.values()])
    return str(data / S11_CAMERA), "camera '1'", "within 0.0001", "not a rotation"


def _mirrored_rotation(data: Path) -> tuple[str, ...]:
    edit_json(data / S11_CAMERA, lambda cams: [cam.update(R=(np.array(cam["R"]) * [[1], [1], [-1]]).tolist()) for cam in cams.values()])
    return str(data / S11_CAMERA), "camera '1'", "det R = -1", "not a rotation"


def _wrong_subject(data: Path) -> tuple[str, ...]:
    image: dict = {}
    edit_json(data / S11_DATA, lambda doc: (image.update(first_s11_test_image(doc)), first_s11_test_image(doc).update(subject=9)))
    return str(data / S11_DATA), f"image {image['id']}", "says subject 9", "file of subject 11"


def _escaping_file_name(data: Path) -> tuple[str, ...]:
    image: dict = {}
    outside = data.parent / "elsewhere"
    outside.mkdir()
    shutil.copyfile(data / "images" / first_s11_test_image(json.loads((data / S11_DATA).read_text()))["file_name"], outside / "x.jpg")

    def change(doc: dict) -> None:
        target = first_s11_test_image(doc)
        image.update(target)
        target["file_name"] = "../../elsewhere/x.jpg"

    edit_json(data / S11_DATA, change)
    return str(data / S11_DATA), f"image {image['id']}", "'../../elsewhere/x.jpg'", "outside"


def _action_out_of_range(data: Path) -> tuple[str, ...]:
    image: dict = {}

    def change(doc: dict) -> None:
        target = first_s11_test_image(doc)
        image.update(target)
        target["file_name"] = target["file_name"].replace("act_02", "act_17")

    edit_json(data / S11_DATA, change)
    return str(data / S11_DATA), f"image {image['id']}", "act_17", "act_02 to act_16"


@pytest.mark.parametrize(
    "damage", [_scaled_rotation, _mirrored_rotation, _wrong_subject, _escaping_file_name, _action_out_of_range],
    ids=["camera_scaled", "camera_mirrored", "subject_mismatch", "file_name_leaves_root", "action_out_of_range"],
)  # fmt: skip
def test_a_record_the_tool_cannot_vouch_for_is_one_line_before_inference(damage, tmp_path, data, monkeypatch) -> None:
    *names, problem = damage(data)
    out = tmp_path / "out"
    # oracle=true without a checkpoint: the same checks and data path, a second less to start
    oracle = ("variant=XS", "oracle=true", "data=h36m", f"data.root={data}", "data.protocol=1", "data.num_workers=0",
              f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={out}")  # fmt: skip
    run = run_in_process(monkeypatch, tmp_path, *oracle)
    assert_refused(run, out, *names, problem=problem)
    assert not (tmp_path / "cache" / "crops").exists(), "refused while the index is read, before any crop"


def test_symlinks_inside_images_are_followed(data, tmp_path) -> None:
    elsewhere = tmp_path / "disk2"
    clip = "s_11_act_02_subact_01_ca_01"
    shutil.move(data / "images" / clip, elsewhere)
    (data / "images" / clip).symlink_to(elsewhere, target_is_directory=True)
    index = load_test_index(data, 1, True, None)
    store = CropStore(tmp_path / "crops", data, index, "gt", 256)
    rows = [row for row, name in enumerate(index.file_name) if name.startswith(clip)]
    assert rows
    patches, _ = store.fetch(rows)
    assert patches.shape == (len(rows), 256, 256, 3) and patches.any()


# --------------------------------------------------------------------------- caches (rows 5 and 6)


def _same_size_digit_edit(path: Path) -> bytes:
    """The file with the first digit of camera 1's focal length changed: same size, other numbers (the
    focal length scales the back-projected prediction; a translation would cancel out root-relative)."""
    text = path.read_bytes()
    start = text.index(b'"f"')
    digit = next(i for i in range(start, len(text)) if chr(text[i]).isdigit())
    return text[:digit] + str((int(chr(text[digit])) + 1) % 10).encode() + text[digit + 1 :]


def _replace_keeping_size_and_mtime(path: Path, content: bytes, mtime_ns: int) -> None:
    """A new inode with ``content`` under ``path``, its modification time set to ``mtime_ns``."""
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(content)
    os.utime(staged, ns=(mtime_ns, mtime_ns))
    staged.replace(path)


def test_a_same_size_edit_with_its_mtime_restored_is_not_served_stale(data, tmp_path, ckpt, clean_run, monkeypatch) -> None:
    camera = data / S11_CAMERA
    original = camera.read_bytes()
    edited = _same_size_digit_edit(camera)
    assert len(edited) == len(original) and edited != original
    cache = tmp_path / "cache"
    clean_index = load_test_index(data, 1, True, None)
    # The cache learns the edited file's index...
    _replace_keeping_size_and_mtime(camera, edited, camera.stat().st_mtime_ns)
    edited_index = load_test_index(data, 1, True, cache / "index")
    assert np.abs(edited_index.focal - clean_index.focal).max() > 50, "the edit must matter, or this test proves nothing"
    # ...then the original content comes back under the edited file's size and modification time.
    _replace_keeping_size_and_mtime(camera, original, camera.stat().st_mtime_ns)
    out = tmp_path / "out"
    run = run_in_process(monkeypatch, tmp_path, *xs_args(data, out, cache, ckpt))
    assert run.returncode == 0, run.describe()
    assert_same_figures(read_json(out / "results.json"), clean_run, tolerance_mm=1e-9)


def test_an_annotated_size_edited_after_the_store_is_warm_is_refused_warm_and_cold(data, tmp_path, ckpt, monkeypatch) -> None:
    cache = tmp_path / "cache"
    index = load_test_index(data, 1, True, cache / "index")
    store = CropStore(cache / "crops", data, index, "gt", 256)
    store.fetch(range(len(index)))
    assert store.is_warm(range(len(index)))
    image: dict = {}

    def grow(doc: dict) -> None:
        target = first_s11_test_image(doc)
        image.update(target)
        target.update(width=target["width"] + 1, height=target["height"] + 1)

    edit_json(data / S11_DATA, grow)
    edited = load_test_index(data, 1, True, None)
    np.testing.assert_array_equal(edited.bbox, index.bbox)  # only the annotated size differs
    expected = f"image is {image['width']}x{image['height']} but its annotation says {image['width'] + 1}x{image['height'] + 1}"
    lines = []
    for name, cache_dir in (("warm", cache), ("cold", tmp_path / "cold_cache")):
        out = tmp_path / name
        run = run_in_process(monkeypatch, tmp_path, *xs_args(data, out, cache_dir, ckpt))
        lines.append(assert_refused(run, out, image["file_name"], problem=expected))
    assert lines[0] == lines[1]


# --------------------------------------------------------------------------- what stays correct


def test_a_damaged_frame_the_protocol_never_evaluates_changes_nothing_and_is_never_read(data, tmp_path, synthetic_sample) -> None:
    document = json.loads((data / S11_DATA).read_text())
    skipped = [image for image in document["images"] if image["subject"] == 11 and image["frame_idx"] % 64][0]
    path = data / "images" / skipped["file_name"]
    path.unlink()
    path.mkdir()  # opening it as a file would fail: proof that nothing reads it
    clean = load_test_index(synthetic_sample, 1, True, None)
    index = load_test_index(data, 1, True, tmp_path / "index")
    assert skipped["file_name"] not in index.file_name.tolist()
    for field in ("image_id", "file_name", "bbox", "joint_cam", "root_cam", "focal", "center", "image_size"):
        np.testing.assert_array_equal(getattr(index, field), getattr(clean, field), err_msg=field)
    patches, _ = CropStore(tmp_path / "crops", data, index, "gt", 256).fetch(range(len(index)))
    reference, _ = CropStore(tmp_path / "crops_clean", synthetic_sample, clean, "gt", 256).fetch(range(len(clean)))
    np.testing.assert_array_equal(patches, reference)


# --------------------------------------------------------------------------- writing results (row 7)


LIMIT_BYTES = 1000 * 1024  # `ulimit -f 1000`: more than predictions.json and results.json, less than the picture


def _leftovers(out: Path) -> list[str]:
    """Everything a run's writing could leave in its folder besides the lock, the log and the config."""
    return sorted(p.name for p in out.iterdir() if p.name not in (".convnextpose_eval.lock", "run_eval.log", ".hydra"))


def test_a_write_failure_is_one_line_and_the_same_command_then_succeeds(data, tmp_path, ckpt, clean_folder, clean_run, monkeypatch) -> None:
    import resource

    out = tmp_path / "out"
    args = xs_args(data, out, tmp_path / "cache", ckpt)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # `ulimit -f 1000`: the 1.4 MB picture cannot be written (Python ignores SIGXFSZ, so the write gets EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, hard))
    try:
        failed = run_in_process(monkeypatch, tmp_path, *args)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    line = assert_refused(failed, out, str(out / "worst_cases.png"), "EFBIG", problem="could not be written")
    assert "unexpected" not in line and not (out / "traceback.txt").exists()
    # Nothing half-written: only failure.json, saying why the run failed.
    assert _leftovers(out) == ["failure.json"], f"a failed write must leave nothing else behind: {_leftovers(out)}"
    assert f"error: {read_json(out / 'failure.json')['error']}" == line

    # A process killed by a signal while it writes the picture (SIGXFSZ at its default action: no handler
    # runs, as with SIGKILL) leaves predictions.json without results.json, which once blocked every rerun.
    killed = write_killed_by_file_size_limit(out, clean_files(clean_folder), LIMIT_BYTES)
    assert killed == -signal.SIGXFSZ
    assert (out / "predictions.json").exists() and not (out / "results.json").exists(), _leftovers(out)
    rerun = run_in_process(monkeypatch, tmp_path, *args)
    assert rerun.returncode == 0, rerun.describe()
    assert_same_figures(read_json(out / "results.json"), clean_run, tolerance_mm=1e-9)
    assert _leftovers(out) == ["predictions.json", "report.html", "results.json", "worst_cases.png"], _leftovers(out)


# --------------------------------------------------------------------------- sweeps (row 8)


def test_a_sweep_whose_jobs_share_a_folder_is_refused_before_any_job_runs(tmp_path, monkeypatch) -> None:
    sweep = tmp_path / "sweep"
    run = run_in_process(monkeypatch, tmp_path, "-m", "experiment=demo", "variant=XS,S", "hydra.sweep.subdir=job", f"hydra.sweep.dir={sweep}")
    assert run.returncode == 2, run.describe()
    assert len(run.error_lines) == 1, run.describe()
    line = run.error_lines[0]
    for part in ("hydra.sweep.subdir=job", "#0 (variant=XS", "#1 (variant=S", str(sweep / "job")):
        assert part in line, f"{part!r} not in {line}"
    assert not sweep.exists(), "no job may have started"


# --------------------------------------------------------------------------- several devices


def test_a_truncated_image_in_one_ranks_shard_is_one_line_under_ddp(data, tmp_path, ckpt, monkeypatch) -> None:
    index = load_test_index(data, 1, True, None)
    victim = data / "images" / str(index.file_name[1])  # rank 1 of 2 scores rows 1, 3, 5, ...
    content = victim.read_bytes()
    victim.write_bytes(content[: len(content) // 2])
    out = tmp_path / "out"
    ddp = ("trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu")
    run = run_in_process(monkeypatch, tmp_path, *xs_args(data, out, tmp_path / "cache", ckpt, *ddp))
    assert_refused(run, out, str(victim), problem="truncated JPEG")


def test_a_bugs_traceback_goes_with_its_failure_record_when_the_rerun_succeeds(data, tmp_path, ckpt, monkeypatch) -> None:
    """A failure the tool did not foresee leaves failure.json and traceback.txt; the same command, once it
    succeeds, leaves neither beside its results (a stale traceback would say the run failed)."""
    out = tmp_path / "out"
    args = xs_args(data, out, tmp_path / "cache", ckpt)

    def planted_bug(*_args, **_kwargs):
        raise RuntimeError("a planted bug")

    with monkeypatch.context() as patch:
        patch.setattr("convnextpose_eval.run.evaluation.build_trainer", planted_bug)
        failed = run_in_process(patch, tmp_path, *args)
    assert failed.returncode != 0 and len(failed.error_lines) == 1, failed.describe()
    assert "unexpected RuntimeError: a planted bug" in failed.error_lines[0] and str(out / "traceback.txt") in failed.error_lines[0]
    assert "a planted bug" in (out / "traceback.txt").read_text() and _leftovers(out) == ["failure.json", "traceback.txt"]
    rerun = run_in_process(monkeypatch, tmp_path, *args)
    assert rerun.returncode == 0, rerun.describe()
    assert _leftovers(out) == ["predictions.json", "report.html", "results.json", "worst_cases.png"], _leftovers(out)
