"""Checkpoints the reader cannot vouch for: two values for one weight, two weight sets, folder entries that
are not regular files of the folder. Each is one CheckpointError (run_job prints it as ``error: ...`` and
exits 2) naming the file and what is wrong, before any weight is used."""

from __future__ import annotations

import os
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from convnextpose_eval.checkpoint.reader import read_checkpoint
from convnextpose_eval.common.errors import CheckpointError, EvalError

# A modern head key of every variant and the name the M/L files give the same weight (docs/protocol.md, "Checkpoints").
MODERN_KEY = "head.deconv_layers_1.dwconv.weight"
LEGACY_TWIN = "head.deconv_layers_1.0.weight"
PROMPT_S = 10.0  # far above what a refusal costs, far below a hang


def _refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert isinstance(error.value, EvalError)  # run_job's one line and exit status 2
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


@pytest.fixture()
def xs_network(released_files) -> dict[str, torch.Tensor]:
    """The XS file's weights as the released file names them (``module.`` prefix, modern head names)."""
    content = torch.load(released_files["XS"], map_location="cpu", weights_only=True)
    assert MODERN_KEY in {key.removeprefix("module.") for key in content["network"]}
    return dict(content["network"])


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_a_legacy_twin_of_a_modern_key_is_refused_naming_both(tmp_path, xs_network, prefix: str) -> None:
    network = {key.removeprefix("module."): value for key, value in xs_network.items()}
    network[LEGACY_TWIN] = network[MODERN_KEY] + 1.0  # a different value for the same weight
    network = {f"{prefix}{key}": value for key, value in network.items()}
    path = tmp_path / "twin.tar"
    torch.save({"epoch": 68, "network": network}, path)
    message = _refusal(path)
    assert f"'{prefix}{MODERN_KEY}'" in message and f"'{prefix}{LEGACY_TWIN}'" in message, message
    assert "legacy" in message


def test_the_twin_is_refused_whichever_key_comes_first(tmp_path, xs_network) -> None:
    network = {LEGACY_TWIN: xs_network[f"module.{MODERN_KEY}"] * 2, **{k.removeprefix("module."): v for k, v in xs_network.items()}}
    path = tmp_path / "twin_first.tar"
    torch.save({"network": network}, path)
    message = _refusal(path)
    assert MODERN_KEY in message and LEGACY_TWIN in message


def test_two_keys_that_read_as_one_name_are_refused(tmp_path) -> None:
    path = tmp_path / "int_and_str.pth"
    torch.save({1: torch.zeros(2), "1": torch.ones(2)}, path)
    assert "'1'" in _refusal(path)


def test_two_weight_sets_are_refused_naming_both(tmp_path, xs_network) -> None:
    other = {key: value * 0.5 for key, value in xs_network.items()}
    path = tmp_path / "two_sets.tar"
    torch.save({"epoch": 68, "network": xs_network, "state_dict": other}, path)
    message = _refusal(path)
    assert "'network'" in message and "'state_dict'" in message and "two weight sets" in message


def test_one_weight_set_beside_other_dicts_still_loads(tmp_path, xs_network) -> None:
    path = tmp_path / "one_set.tar"
    torch.save({"epoch": 68, "network": xs_network, "optimizer": {"state": {}, "param_groups": []}, "model": {"name": "XS"}}, path)
    assert MODERN_KEY in read_checkpoint(path).state_dict


@pytest.fixture()
def unzipped(tmp_path, released_files) -> Path:
    """``ConvNeXtPose_XS.tar`` unzipped as a user would: a ``snapshot_68.pth/`` folder."""
    with zipfile.ZipFile(released_files["XS"]) as archive:
        archive.extractall(tmp_path / "unzipped")
    (root,) = (tmp_path / "unzipped").iterdir()
    assert (root / "data.pkl").is_file() and (root / "version").is_file()
    return root


def _refused_promptly(path: Path) -> str:
    """The refusal, within PROMPT_S; a read that blocks (a FIFO) or never ends (/dev/zero) fails the test."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            read_checkpoint(path)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(PROMPT_S)
    assert outcome, f"reading {path} did not finish within {PROMPT_S:.0f} s"
    assert isinstance(outcome[0], CheckpointError), f"expected a refusal, got {outcome[0]!r}"
    assert time.monotonic() - started < PROMPT_S
    return str(outcome[0])


def test_an_entry_that_is_a_fifo_is_refused_in_one_line(unzipped) -> None:
    (unzipped / "version").unlink()
    os.mkfifo(unzipped / "version")
    try:
        message = _refused_promptly(unzipped)
    finally:  # unblock a reader stuck on the FIFO, if any
        try:
            os.close(os.open(unzipped / "version", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert "'version'" in message and "FIFO" in message, message


def test_an_entry_linked_to_dev_zero_is_refused_at_once(unzipped, tmp_path, monkeypatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    (unzipped / "version").unlink()
    (unzipped / "version").symlink_to("/dev/zero")
    message = _refused_promptly(unzipped)
    assert "'version'" in message and "/dev/zero" in message and "outside" in message, message
    assert not list(scratch.iterdir()), "nothing may be written to the temporary folder"


def test_a_symlink_out_of_the_folder_to_a_regular_file_is_refused(unzipped, tmp_path) -> None:
    outside = tmp_path / "elsewhere"
    (unzipped / "data" / "0").rename(outside)
    (unzipped / "data" / "0").symlink_to(outside)
    message = _refused_promptly(unzipped)
    assert "'data/0'" in message and "outside" in message, message


def test_a_link_to_the_folder_is_followed(unzipped, tmp_path, released_files) -> None:
    link = tmp_path / "ckpt_link"
    link.symlink_to(unzipped, target_is_directory=True)
    reference = read_checkpoint(released_files["XS"]).state_dict
    loaded = read_checkpoint(link).state_dict
    assert loaded.keys() == reference.keys() and all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_a_checkpoint_path_that_is_a_fifo_is_refused(tmp_path) -> None:
    fifo = tmp_path / "ConvNeXtPose_XS.tar"
    os.mkfifo(fifo)
    try:
        assert "FIFO" in _refused_promptly(fifo)
    finally:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
