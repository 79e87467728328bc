"""Checkpoints in every form users hold them: loading, architecture checks, refusals, downloads.

The released-style files are written by hand in conftest.py (docs/protocol.md, "Checkpoints" and "The four architectures"); every
successful load is checked by running the loaded network and comparing its output bit for bit
with the randomized source network's.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import random
import re
import shlex
import shutil
import sys
import tarfile
import zipfile
from collections import namedtuple
from pathlib import Path

import gdown
import pytest
import torch
from conftest import (
    LEGACY_HEAD_KEYS,
    RELEASED_EPOCH,
    VARIANTS,
    legacy_head_name,
)

from convnextpose_eval.checkpoint.architecture import (
    infer_arch,
    load_weights,
    match_variant,
    resolve_arch,
)
from convnextpose_eval.checkpoint.fetch import locate_checkpoint
from convnextpose_eval.checkpoint.reader import read_checkpoint
from convnextpose_eval.common.errors import CheckpointError
from convnextpose_eval.config.compose import released_variants
from convnextpose_eval.network import ConvNeXtPose
from convnextpose_eval.network.spec import specs_of
from convnextpose_eval.sample.released_format import write_released_checkpoint

FOLDER_ID = "12H7zkLvmJtrkCmAUAPkQ6788WAnO60gI"  # docs/real-data.md, "What you need"
FORMS = (
    "released_tar",
    "snapshot_pth",
    "unzipped_snapshot_dir",
    "unzipped_parent_dir",
    "bare_module_keys",
    "bare_plain_keys",
    "project_writer",
)
WRONG_PAIRS = [(held, asked) for held in VARIANTS for asked in VARIANTS if held != asked]


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)


def run_loaded(path: Path, variant_cfg: dict, known, images: torch.Tensor) -> tuple[torch.Tensor, object, ConvNeXtPose]:
    """read_checkpoint + resolve_arch + ConvNeXtPose + load_weights, then the network's output on ``images``."""
    ckpt = read_checkpoint(path)
    arch = resolve_arch(ckpt, variant_cfg, known)
    model = ConvNeXtPose(arch)
    load_weights(model, ckpt)
    model.eval()
    with torch.no_grad():
        return model(images), ckpt, model


# --------------------------------------------------------------------------- the forms


@pytest.fixture(scope="module")
def checkpoint_forms(tmp_path_factory, released_files, source_networks, variant_cfgs) -> dict[tuple[str, str], Path]:
    """(variant, form) -> a path. Every form is derived from the hand-written released file or the source network."""
    root = tmp_path_factory.mktemp("forms")
    forms = {}
    for name in VARIANTS:
        epoch = RELEASED_EPOCH[name]
        folder = root / name
        folder.mkdir()
        released = released_files[name]
        forms[name, "released_tar"] = released
        forms[name, "snapshot_pth"] = Path(shutil.copyfile(released, folder / f"snapshot_{epoch}.pth"))
        unzipped = folder / f"unzipped_{name}"
        with zipfile.ZipFile(released) as archive:
            archive.extractall(unzipped)
        forms[name, "unzipped_snapshot_dir"] = unzipped / f"snapshot_{epoch}.pth"
        forms[name, "unzipped_parent_dir"] = unzipped
        state = source_networks[name].state_dict()
        network_entry = {}  # what the released file's 'network' entry holds: module. keys, legacy head names for M/L
        for key, value in state.items():
            network_entry[f"module.{legacy_head_name(key) if LEGACY_HEAD_KEYS[name] else key}"] = value.clone()
        torch.save(network_entry, folder / "bare_module.pth")
        forms[name, "bare_module_keys"] = folder / "bare_module.pth"
        torch.save({k: v.clone() for k, v in state.items()}, folder / "bare_plain.pth")
        forms[name, "bare_plain_keys"] = folder / "bare_plain.pth"
        (folder / "writer").mkdir()
        forms[name, "project_writer"] = write_released_checkpoint(
            state, folder / "writer" / f"snapshot_{epoch}.pth.tar", epoch, key_style=variant_cfgs[name]["key_style"]
        )
    return forms


def test_hand_written_file_has_the_released_layout(released_files):
    for name, path in released_files.items():
        epoch = RELEASED_EPOCH[name]
        assert path.name == f"ConvNeXtPose_{name}.tar"
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickled = archive.read(f"snapshot_{epoch}.pth/data.pkl")
        assert all(n.startswith(f"snapshot_{epoch}.pth/") for n in names)  # torch named the inner folder after the old file
        assert f"snapshot_{epoch}.pth/data/0" in names
        assert b"cuda:0" in pickled and b"X\x03\x00\x00\x00cpu" not in pickled
        head_key = b"module.head.deconv_layers_1.0.weight" if LEGACY_HEAD_KEYS[name] else b"module.head.deconv_layers_1.dwconv.weight"
        assert head_key in pickled


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows the CPU-only failure of a cuda:0-tagged file")
def test_plain_torch_load_fails_on_cpu_but_the_project_loader_works(released_files, source_networks):
    path = released_files["L"]
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        torch.load(path, weights_only=True)
    ckpt = read_checkpoint(path)
    assert ckpt.epoch == 83 and ckpt.key_style == "legacy"
    assert all(t.device.type == "cpu" for t in ckpt.state_dict.values())
    assert not any(k.startswith("module.") for k in ckpt.state_dict)
    assert set(ckpt.state_dict) == set(source_networks["L"].state_dict())


def test_released_specs_come_from_the_variant_configs(known_specs):
    assert specs_of(released_variants()) == known_specs


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", VARIANTS)
def test_every_form_loads_to_the_same_network(
    name, form, checkpoint_forms, variant_cfgs, known_specs, sample_images, source_outputs, source_networks
):
    path = checkpoint_forms[name, form]
    output, ckpt, model = run_loaded(path, variant_cfgs[name], known_specs, sample_images)
    assert torch.equal(output, source_outputs[name])
    loaded, source = model.state_dict(), source_networks[name].state_dict()
    assert loaded.keys() == source.keys() and all(torch.equal(loaded[k], source[k]) for k in source)
    if form.startswith("bare"):
        assert ckpt.epoch is None
    else:
        assert ckpt.epoch == RELEASED_EPOCH[name]
    expect_legacy = LEGACY_HEAD_KEYS[name] and form not in ("bare_plain_keys",)
    assert ckpt.key_style == ("legacy" if expect_legacy else "modern")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", VARIANTS)
def test_auto_names_the_variant_for_every_form(name, form, checkpoint_forms, auto_variant_cfg, known_specs):
    ckpt = read_checkpoint(checkpoint_forms[name, form])
    assert match_variant(infer_arch(ckpt, known_specs), known_specs) == name
    assert resolve_arch(ckpt, auto_variant_cfg, known_specs) == known_specs[name]  # upsampling included


@pytest.mark.parametrize("name", VARIANTS)
def test_auto_loads_the_released_file(name, released_files, auto_variant_cfg, known_specs, sample_images, source_outputs):
    output, _, _ = run_loaded(released_files[name], auto_variant_cfg, known_specs, sample_images)
    assert torch.equal(output, source_outputs[name])


@pytest.mark.parametrize("name", VARIANTS)
def test_output_check_is_meaningful(name, known_specs, sample_images, source_outputs):
    """A network with other weights gives another output, so equal outputs above mean the weights were loaded."""
    torch.manual_seed(12345)
    fresh = ConvNeXtPose(known_specs[name]).eval()
    with torch.no_grad():
        assert not torch.equal(fresh(sample_images), source_outputs[name])
    assert source_outputs[name].std(dim=1).min() > 0  # joints differ from each other: not a degenerate output


# --------------------------------------------------------------------------- wrong pairings


@pytest.fixture(scope="module")
def released_loaded(released_files):
    return {name: read_checkpoint(path) for name, path in released_files.items()}


@pytest.mark.parametrize("held,asked", WRONG_PAIRS)
def test_wrong_variant_is_refused_with_advice(held, asked, released_loaded, variant_cfgs, known_specs):
    with pytest.raises(CheckpointError) as info:
        resolve_arch(released_loaded[held], variant_cfgs[asked], known_specs)
    message = str(info.value)
    assert_one_line(message)
    assert f"ConvNeXtPose_{held}.tar" in message
    assert f"holds an {held}-shaped network" in message
    assert re.search(rf"variant={held}\b", message), message  # the right variant is suggested ...
    assert "variant=auto" in message  # ... or auto
    assert re.search(rf"variant={asked}\b", message), message  # and the requested one is named


def _skip_if_pipeline_module_missing(stderr: str) -> None:
    """Skip (not fail) only while a pipeline module this CLI run needs has not been written yet."""
    missing = re.search(r"No module named '(convnextpose_eval[\w.]*)'", stderr)
    if missing:
        try:
            found = importlib.util.find_spec(missing.group(1))
        except ModuleNotFoundError:
            found = None
        if found is None:
            pytest.skip(f"the evaluation pipeline is unfinished: {missing.group(1)} does not exist yet")


CLI_PAIRS = [("S", "L"), ("M", "S")]  # (asked, held)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, released_files):
    """Both runs of ``python run_eval.py``, through its real entry point in this process (tests/inprocess.py)."""
    from inprocess import run_in_process

    results = {}
    for asked, held in CLI_PAIRS:
        base = tmp_path_factory.mktemp(f"cli_{asked}_{held}")
        empty = base / "h36m_empty"
        empty.mkdir()
        args = (f"variant={asked}", f"ckpt_path={released_files[held]}", "data=h36m", f"data.root={empty}",
                f"hydra.run.dir={base / 'run'}", "trainer=cpu")  # fmt: skip
        with pytest.MonkeyPatch.context() as patch:
            done = run_in_process(patch, base / "root", *args)
        results[asked, held] = (done.returncode, done.stdout, done.stderr, base, empty)
    return results


@pytest.mark.parametrize("asked,held", CLI_PAIRS)
def test_cli_refuses_wrong_variant_before_reading_data(asked, held, cli_runs):
    code, stdout, stderr, base, empty = cli_runs[asked, held]
    _skip_if_pipeline_module_missing(stderr)
    assert code != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in stderr + stdout
    assert f"ConvNeXtPose_{held}.tar" in lines[0] and f"holds an {held}-shaped network" in lines[0]
    assert re.search(rf"variant={held}\b", lines[0]) and "variant=auto" in lines[0]
    # It is about the checkpoint, not the (empty) data folder, and nothing was evaluated.
    assert "annotations" not in lines[0] and str(empty) not in lines[0]
    assert list(empty.iterdir()) == []
    assert not (base / "run" / "results.json").exists()


# --------------------------------------------------------------------------- refusals


class _RunsShell:
    """Unpickling this would run a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps({"epoch": 1, "network": {"backbone.norm.weight": _RunsShell(marker)}}, protocol=2)


def _make_bad(kind: str, folder: Path, released: Path, marker: Path) -> Path:
    if kind == "text":
        path = folder / "ConvNeXtPose_S.tar"
        path.write_text("<!DOCTYPE html><html>Google Drive - quota exceeded</html>\n")
    elif kind == "random_bytes":
        path = folder / "snapshot_67.pth.tar"
        path.write_bytes(bytes([0x13]) + random.Random(0).randbytes(4095))
    elif kind == "zero_bytes":
        path = folder / "ConvNeXtPose_XS.tar"
        path.touch()
    elif kind == "truncated":
        data = released.read_bytes()
        path = folder / "ConvNeXtPose_XS.tar"
        path.write_bytes(data[: len(data) // 2])
    elif kind == "real_tar":
        text = folder / "readme.txt"
        text.write_text("not a checkpoint\n")
        path = folder / "ConvNeXtPose_L.tar"
        with tarfile.open(path, "w") as archive:
            archive.add(text, arcname="readme.txt")
    elif kind == "dir_without_data_pkl":
        path = folder / "snapshot_83.pth"
        (path / "data").mkdir(parents=True)
        (path / "data" / "0").write_bytes(b"\0" * 16)
        (path / "version").write_text("3\n")
    elif kind == "evil_torch_zip":
        path = folder / "snapshot_1.pth.tar"
        torch.save({"epoch": 1, "network": {"w": torch.zeros(2)}}, path)
        with zipfile.ZipFile(path) as archive:
            entries = [(info, archive.read(info)) for info in archive.infolist()]
        with zipfile.ZipFile(path, "w") as archive:
            for info, data in entries:
                archive.writestr(info, _evil_pickle(marker) if info.filename.endswith("/data.pkl") else data)
    elif kind == "evil_plain_pickle":
        path = folder / "snapshot_1.pth"
        path.write_bytes(_evil_pickle(marker))
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


BAD_KINDS = ("text", "random_bytes", "zero_bytes", "truncated", "real_tar", "dir_without_data_pkl", "evil_torch_zip", "evil_plain_pickle")


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_files_are_refused_with_one_line(kind, tmp_path, released_files):
    marker = tmp_path / "PWNED"
    path = _make_bad(kind, tmp_path, released_files["XS"], marker)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert_one_line(message)
    assert path.name in message
    assert not marker.exists()
    assert "Traceback" not in message


def test_the_evil_payload_is_real(tmp_path):
    """Control: plain pickle would run the command, so the refusal above is meaningful."""
    control = tmp_path / "control"
    pickle.loads(_evil_pickle(control))
    assert control.exists()


# --------------------------------------------------------------------------- bad weights


@pytest.fixture
def xs_state(source_networks):
    return {k: v.clone() for k, v in source_networks["XS"].state_dict().items()}


def _saved(tmp_path: Path, state: dict) -> object:
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    return read_checkpoint(path)


def _fresh_xs(known_specs) -> ConvNeXtPose:
    return ConvNeXtPose(known_specs["XS"])


def test_nan_and_inf_weights_are_refused(tmp_path, xs_state, known_specs):
    xs_state["backbone.stages.2.3.pwconv1.weight"][0, 0, 0, 0] = float("nan")
    xs_state["head.deconv_layers_2.norm.running_var"][3] = float("inf")
    with pytest.raises(CheckpointError) as info:
        load_weights(_fresh_xs(known_specs), _saved(tmp_path, xs_state))
    message = str(info.value)
    assert_one_line(message)
    assert "weights.pth" in message
    assert "backbone.stages.2.3.pwconv1.weight" in message and "head.deconv_layers_2.norm.running_var" in message


def test_missing_keys_are_named(tmp_path, xs_state, known_specs):
    del xs_state["backbone.stages.1.0.dwconv.bias"]
    del xs_state["head.final_layer.bias"]
    with pytest.raises(CheckpointError) as info:
        load_weights(_fresh_xs(known_specs), _saved(tmp_path, xs_state))
    message = str(info.value)
    assert_one_line(message)
    assert "weights.pth" in message and "missing" in message
    assert "backbone.stages.1.0.dwconv.bias" in message and "head.final_layer.bias" in message


def test_extra_keys_are_named(tmp_path, xs_state, known_specs):
    xs_state["head.aux_layer.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        load_weights(_fresh_xs(known_specs), _saved(tmp_path, xs_state))
    message = str(info.value)
    assert_one_line(message)
    assert "weights.pth" in message and "head.aux_layer.weight" in message


def test_size_mismatch_is_named(released_files, known_specs):
    # S and M have the same keys; only the final layer's size differs (576 vs 1152 channels).
    with pytest.raises(CheckpointError) as info:
        load_weights(ConvNeXtPose(known_specs["M"]), read_checkpoint(released_files["S"]))
    message = str(info.value)
    assert_one_line(message)
    assert "ConvNeXtPose_S.tar" in message and "head.final_layer.weight" in message
    assert "576" in message and "1152" in message


# --------------------------------------------------------------------------- download


try:
    DriveFile = sys.modules["gdown.download"].GoogleDriveFileToDownload
except (KeyError, AttributeError):  # gdown's own record type, or one with the same fields
    DriveFile = namedtuple("GoogleDriveFileToDownload", ("id", "path", "local_path"))


class FakeDrive:
    """Stands in for gdown.download_folder (listing) and gdown.download (one file)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.mode = "ok"
        self.listings = 0
        self.downloads: list[tuple[str, str]] = []

    def download_folder(self, url=None, id=None, output=None, quiet=False, skip_download=False, **kwargs):
        self.listings += 1
        if self.mode == "offline":
            raise ConnectionError("Failed to establish a new connection: [Errno -3] Temporary failure in name resolution")
        assert id == FOLDER_ID and skip_download
        return [DriveFile(id=f"drive-id-{v}", path=f"ConvNeXtPose_{v}.tar", local_path=f"/x/ConvNeXtPose_{v}.tar") for v in VARIANTS]

    def download(self, url=None, output=None, quiet=False, id=None, **kwargs):
        self.downloads.append((id, output))
        if self.mode == "offline_file":
            raise ConnectionError("Connection reset by peer")
        data = self.payload if self.mode == "ok" else self.payload[: len(self.payload) // 2]
        Path(output).write_bytes(data)
        return output


@pytest.fixture
def drive(monkeypatch, released_files):
    fake = FakeDrive(released_files["S"].read_bytes())
    monkeypatch.setattr(gdown, "download_folder", fake.download_folder)
    monkeypatch.setattr(gdown, "download", fake.download)
    return fake


def test_download_then_cache(drive, tmp_path, variant_cfgs, known_specs, sample_images, source_outputs):
    cache = tmp_path / "checkpoints"
    path = locate_checkpoint(None, "ConvNeXtPose_S.tar", cache, FOLDER_ID)
    assert path == cache / "ConvNeXtPose_S.tar" and path.is_file()
    assert [d[0] for d in drive.downloads] == ["drive-id-S"]
    assert sorted(p.name for p in cache.iterdir()) == ["ConvNeXtPose_S.tar"]  # no partial file left beside it
    output, _, _ = run_loaded(path, variant_cfgs["S"], known_specs, sample_images)
    assert torch.equal(output, source_outputs["S"])

    again = locate_checkpoint(None, "ConvNeXtPose_S.tar", cache, FOLDER_ID)
    assert again == path
    assert drive.listings == 1 and len(drive.downloads) == 1  # the cache was used, gdown was not called


def test_interrupted_download_leaves_nothing_and_is_retried(drive, tmp_path):
    cache = tmp_path / "checkpoints"
    drive.mode = "truncated"
    with pytest.raises(CheckpointError) as info:
        locate_checkpoint(None, "ConvNeXtPose_S.tar", cache, FOLDER_ID)
    assert_one_line(str(info.value))
    assert "ConvNeXtPose_S.tar" in str(info.value)
    assert list(cache.iterdir()) == []  # neither the target name nor a partial file

    drive.mode = "ok"
    path = locate_checkpoint(None, "ConvNeXtPose_S.tar", cache, FOLDER_ID)
    assert len(drive.downloads) == 2
    assert read_checkpoint(path).epoch == RELEASED_EPOCH["S"]
    assert sorted(p.name for p in cache.iterdir()) == ["ConvNeXtPose_S.tar"]


@pytest.mark.parametrize("mode", ["offline", "offline_file"])
def test_offline_says_where_to_get_the_file_and_where_to_put_it(mode, drive, tmp_path):
    cache = tmp_path / "checkpoints"
    drive.mode = mode
    with pytest.raises(CheckpointError) as info:
        locate_checkpoint(None, "ConvNeXtPose_S.tar", cache, FOLDER_ID)
    message = str(info.value)
    assert_one_line(message)
    assert "ConvNeXtPose_S.tar" in message and FOLDER_ID in message and str(cache) in message
    assert not (cache / "ConvNeXtPose_S.tar").exists()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_given_path_and_disabled_download_never_call_gdown(drive, tmp_path, released_files):
    assert locate_checkpoint(str(released_files["L"]), "ConvNeXtPose_S.tar", tmp_path, FOLDER_ID) == released_files["L"]
    with pytest.raises(CheckpointError) as info:
        locate_checkpoint(None, "ConvNeXtPose_S.tar", tmp_path / "none", FOLDER_ID, download=False)
    assert_one_line(str(info.value))
    assert "ConvNeXtPose_S.tar" in str(info.value) and FOLDER_ID in str(info.value)
    assert drive.listings == 0 and drive.downloads == []


def test_head_override_that_contradicts_the_file_is_refused(released_files, variant_cfgs, known_specs):
    """variant=L with variant.head.channels=384 against the real L file: the file's shapes win, loudly."""
    from convnextpose_eval.checkpoint.architecture import resolve_arch
    from convnextpose_eval.checkpoint.reader import read_checkpoint

    overridden = {**variant_cfgs["L"], "head": {**variant_cfgs["L"]["head"], "channels": 384}}
    ckpt = read_checkpoint(released_files["L"])
    with pytest.raises(CheckpointError) as caught:
        resolve_arch(ckpt, overridden, known_specs)
    message = str(caught.value)
    assert "\n" not in message
    assert "holds an L-shaped network" in message and "head channels 384" in message
    assert "drop the variant.* overrides" in message
