"""Bad inputs through the real command line (docs/troubleshooting.md, "How errors look here"): non-zero exit, one ``error:`` line naming the file
and the problem, no traceback, and no results left behind.

Every case is ``python run_eval.py ...`` on a private, damaged copy of the synthetic sample, run through
the real entry point in this process (tests/inprocess.py: its exit status and everything it prints on
stderr), one after another when the module's first test needs them. A fresh interpreter's exit status and
stderr for a refusal are test_cli.py's (its first refusal runs as a subprocess).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from inprocess import InProcessRun, run_in_process

pytestmark = pytest.mark.slow

S11_DATA = "Human36M_subject11_data.json"
BBOX_ROOT = "bbox_root_human36m_output.json"


@dataclass
class Run:
    """One case's finished command, with the folders it used and what its error line must say."""

    name: str
    case_dir: Path
    out: Path
    cli: InProcessRun
    facts: dict = field(default_factory=dict)

    @property
    def returncode(self) -> int:
        return self.cli.returncode

    @property
    def stderr(self) -> str:
        return self.cli.stderr

    @property
    def last_line(self) -> str:
        return self.cli.last_line

    def describe(self) -> str:
        return f"case {self.name}: {self.cli.describe()}"


# --------------------------------------------------------------------------- how each case damages its copy


def _load(path: Path):
    with open(path) as handle:
        return json.load(handle)


def _first_s11_test_image(data: Path) -> dict:
    """The first S11 test image (frame_idx % 64 == 0) in annotation order: the first one the run reads."""
    doc = _load(data / "annotations" / S11_DATA)
    images = {image["id"]: image for image in doc["images"]}
    for ann in doc["annotations"]:
        image = images[ann["image_id"]]
        if image["subject"] == 11 and image["frame_idx"] % 64 == 0:
            return image
    raise AssertionError("the sample has no S11 test image")


def _missing_image(case: Path, data: Path) -> tuple[list[str], dict]:
    image = _first_s11_test_image(data)
    (data / "images" / image["file_name"]).unlink()
    return ["data.protocol=1"], {"names": [str(data / "images" / image["file_name"])], "problem": r"missing|not found|does not exist|no such"}


def _garbage_image(workers: int, stale: bool) -> Callable[[Path, Path], tuple[list[str], dict]]:
    def prepare(case: Path, data: Path) -> tuple[list[str], dict]:
        image = _first_s11_test_image(data)
        (data / "images" / image["file_name"]).write_bytes(b"\xff\xd8 this is not a JPEG " + os.urandom(2000))
        if stale:  # what a previous, successful run left in the same output folder
            (case / "out").mkdir()
            # Marked as this tool's (the "tool" key), so the new run may clear it; anyone else's file it must refuse.
            (case / "out" / "results.json").write_text(json.dumps({"tool": "convnextpose-eval", "variant": "XS", "stale": True}))
            (case / "out" / "predictions.json").write_text("[]")
        problem = r"unreadable|corrupt|not an image|cannot (be )?decode|could not (be )?(read|decode)"
        facts = {"names": [Path(image["file_name"]).name], "problem": problem, "path": str(data / "images" / image["file_name"])}
        return ["data.protocol=1", f"data.num_workers={workers}"], facts

    return prepare


def _truncated_json(case: Path, data: Path) -> tuple[list[str], dict]:
    path = data / "annotations" / S11_DATA
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return ["data.protocol=1"], {"names": [str(path)], "problem": r"JSON|truncated|corrupt"}


def _missing_field(case: Path, data: Path) -> tuple[list[str], dict]:
    path = data / "annotations" / S11_DATA
    doc = _load(path)
    target = _first_s11_test_image(data)["id"]
    for image in doc["images"]:
        if image["id"] == target:
            del image["frame_idx"]
    path.write_text(json.dumps(doc))
    return ["data.protocol=1"], {"names": [str(path)], "problem": r"frame_idx"}


def _incomplete_bbox_root(case: Path, data: Path) -> tuple[list[str], dict]:
    path = data / "bbox_root" / BBOX_ROOT
    entries = _load(path)
    removed = _first_s11_test_image(data)["id"]
    kept = [e for e in entries if e["image_id"] != removed]
    assert len(kept) == len(entries) - 1
    path.write_text(json.dumps(kept))
    return ["data.protocol=2", "data.use_gt_info=false"], {"names": [str(path)], "problem": rf"\b{removed}\b"}


def _no_test_images(case: Path, data: Path) -> tuple[list[str], dict]:
    path = data / "annotations" / S11_DATA
    path.write_text(json.dumps({"images": [], "annotations": []}))
    return ["data.protocol=1"], {"names": [str(path)], "problem": r"\bno\b.*images|no test|selects no|empty|nothing"}


def _root_missing(case: Path, data: Path) -> tuple[list[str], dict]:
    missing = case / "no_such_folder"
    return [f"data.root={missing}"], {"names": [str(missing)], "problem": r"does not exist|missing|not found|no such"}


def _output_inside_a_file(case: Path, data: Path) -> tuple[list[str], dict]:
    (case / "afile").write_text("a regular file where the output folder's parent should be\n")
    out = case / "afile" / "out"
    return [f"hydra.run.dir={out}"], {"out": out, "names": [str(case / "afile")], "problem": r"writ|not a directory|cannot create|could not create"}


CASES: dict[str, Callable[[Path, Path], tuple[list[str], dict]]] = {
    "missing_image": _missing_image,
    "unreadable_image": _garbage_image(workers=0, stale=True),
    "unreadable_image_in_worker": _garbage_image(workers=1, stale=False),
    "truncated_annotation_json": _truncated_json,
    "image_record_missing_field": _missing_field,
    "bbox_root_lacks_test_images": _incomplete_bbox_root,
    "protocol_selects_no_images": _no_test_images,
    "data_root_missing": _root_missing,
    "output_folder_not_creatable": _output_inside_a_file,
}
# Cases that must fail while checking inputs, before a single crop is decoded.
BEFORE_INFERENCE = set(CASES) - {"unreadable_image", "unreadable_image_in_worker"}


# --------------------------------------------------------------------------- running them


def _run(name: str, case: Path, ckpt: Path, overrides: list[str], facts: dict) -> Run:
    """The case's run, with the case folder as project root (its caches land under it)."""
    out = facts.get("out", case / "out")
    with pytest.MonkeyPatch.context() as patch:
        done = run_in_process(
            patch, case, "variant=XS", f"ckpt_path={ckpt}", "data=h36m", f"data.root={case / 'data'}", f"hydra.run.dir={out}",
            "data.num_workers=0", *overrides, shared_exports=True,
        )  # fmt: skip
    return Run(name, case, Path(out), done, facts)


def uses(*names: str):
    """Mark a test that is not parametrized by ``name`` with the cases it reads."""

    def mark(function):
        function.cases = names
        return function

    return mark


def _selected_cases(session: pytest.Session) -> list[str]:
    """The cases the selected tests of this module need (all of them in a full run)."""
    needed = set()
    for item in session.items:
        if getattr(item, "module", None) is not sys.modules[__name__]:
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "name" in callspec.params:
            needed.add(callspec.params["name"])
        needed.update(getattr(getattr(item, "function", None), "cases", ()))
    return [name for name in CASES if name in needed]


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, synthetic_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Case name -> Run; every case gets its own copy of the data and its own CONVNEXTPOSE_EVAL_ROOT."""
    import shutil

    ckpt = synthetic_sample / "checkpoints" / "ConvNeXtPose_XS.tar"
    base = tmp_path_factory.mktemp("bad_inputs")
    finished: dict[str, Run] = {}
    for name in _selected_cases(request.session):
        prepare = CASES[name]
        case = base / name
        case.mkdir()
        data = case / "data"
        shutil.copytree(synthetic_sample, data, ignore=shutil.ignore_patterns("checkpoints"))
        overrides, facts = prepare(case, data)
        finished[name] = _run(name, case, ckpt, overrides, facts)
    return finished


def _cache_files(run: Run) -> list[Path]:
    cache = run.case_dir / "outputs" / "cache"
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


def _check_failure(run: Run) -> None:
    assert run.returncode != 0, run.describe()
    assert "Traceback" not in run.stderr, run.describe()
    line = run.last_line
    assert line.startswith("error:"), run.describe()
    assert len(run.cli.error_lines) == 1, run.describe()
    for name in run.facts["names"]:
        assert name in line, f"the error line must name {name!r}: {line!r}"
    assert re.search(run.facts["problem"], line, flags=re.IGNORECASE), f"the error line must say what is wrong ({run.facts['problem']}): {line!r}"
    for leftover in ("results.json", "predictions.json"):
        assert not (run.out / leftover).exists(), f"{leftover} left in {run.out}\n{run.describe()}"


# --------------------------------------------------------------------------- the cases


@pytest.mark.parametrize("name", sorted(BEFORE_INFERENCE - {"output_folder_not_creatable"}))
def test_bad_input_fails_before_inference_with_one_line(runs, name: str) -> None:
    run = runs[name]
    _check_failure(run)
    crops = [p for p in _cache_files(run) if "crops" in p.parts]
    assert not crops, f"inputs must be checked before any crop is decoded: {crops[:3]}"


@pytest.mark.parametrize("name", ["unreadable_image", "unreadable_image_in_worker"])
def test_unreadable_image_fails_during_inference_with_one_line(runs, name: str) -> None:
    run = runs[name]
    _check_failure(run)
    # the worker's wrapping ("Caught DataError in DataLoader worker process 0", the class name) must not leak
    # "error: <the image's path>: <the problem>", nothing else
    assert run.last_line.startswith(f"error: {run.facts['path']}"), run.last_line
    rest = run.last_line[len(f"error: {run.facts['path']}") :]
    assert not re.search(r"worker|Caught|DataError|Original|Exception", rest), run.last_line


@uses("unreadable_image")
def test_a_failed_rerun_leaves_no_stale_results(runs) -> None:
    # unreadable_image ran in a folder holding a previous run's results.json and predictions.json
    run = runs["unreadable_image"]
    assert run.returncode != 0
    assert run.out.is_dir(), "the output folder itself stays"
    assert not (run.out / "results.json").exists(), "a stale results.json would pass for this run's results"
    assert not (run.out / "predictions.json").exists()


@uses("output_folder_not_creatable")
def test_output_folder_that_cannot_be_created_fails_before_compute(runs) -> None:
    run = runs["output_folder_not_creatable"]
    assert run.returncode != 0, run.describe()
    _check_failure(run)
    assert not _cache_files(run), "nothing may be read or cached before the output folder is known to be writable"
