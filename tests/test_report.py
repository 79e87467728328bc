"""Sweep reports: entries and order, bands, failures, synthetic warnings, the figure, and the Hydra callback."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf

from convnextpose_eval.common.human36m import ACTION_NAMES, EVAL_JOINT_NAMES
from convnextpose_eval.report.entries import DEAD_JOB_ERROR
from convnextpose_eval.report.summary import format_summary
from convnextpose_eval.report.sweep import write_sweep_report
from convnextpose_eval.results.files import (
    BENCHMARK_JSON,
    BENCHMARK_MD,
    BENCHMARK_PNG,
    REPORT_HTML,
)
from convnextpose_eval.results.paper import compare_to_paper, tolerance_band
from convnextpose_eval.run.sweep import SweepReport

BANDS = [(1.0, "excellent"), (2.0, "very good"), (5.0, "acceptable")]
PAPER = {
    "XS": {"params_m": 3.53, "gflops": 0.82, "mpjpe_p2": 56.61, "pa_mpjpe_p1": None},
    "S": {"params_m": 7.44, "gflops": 1.76, "mpjpe_p2": 51.80, "pa_mpjpe_p1": None},
    "M": {"params_m": 7.59, "gflops": 2.82, "mpjpe_p2": 51.05, "pa_mpjpe_p1": 34.5},
    "L": {"params_m": 8.38, "gflops": 4.30, "mpjpe_p2": 49.75, "pa_mpjpe_p1": 32.8},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_METRICS = ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")


def make_results(variant: str, mpjpe: float, pa: float, protocol: int = 2, **extra: Any) -> dict[str, Any]:
    """A results.json as run_eval writes it, with per-action errors spread around the overall ones."""
    per_action = {}
    for i, action in enumerate(ACTION_NAMES):
        if action == "Photo":  # an action without samples, as on a small subset
            per_action[action] = {"mpjpe": None, "pa_mpjpe": None, "pa_mpjpe_scaled": None, "num_samples": 0}
            continue
        offset = (i - 7) * 1.5
        per_action[action] = {"mpjpe": mpjpe + offset, "pa_mpjpe": pa + offset / 2,
                              "pa_mpjpe_scaled": pa - 1 + offset / 2, "num_samples": 3 + i}  # fmt: skip
    results = {
        "variant": variant, "protocol": protocol, "num_samples": 53, "flip_test": True, "use_gt_info": True,
        "synthetic": False, "oracle": False,
        "metrics": {"mpjpe": mpjpe, "pa_mpjpe": pa, "pa_mpjpe_scaled": pa - 1.2},
        "per_action": per_action,
        "checkpoint": {"path": f"/ckpt/ConvNeXtPose_{variant}.tar", "sha256": "ab" * 32, "epoch": 83,
                       "detected_variant": variant, "key_style": "legacy"},
        "model": {"params": int(PAPER[variant]["params_m"] * 1e6), "gflops": PAPER[variant]["gflops"] - 0.04},
        "paper": PAPER[variant],
        "throughput": {"images_per_s": 12.3, "seconds": 4.2, "device": "cpu", "devices": 1},
        "crop_cache": {"hits": 0, "misses": 53},
    }  # fmt: skip
    # The rest of what the results schema requires (docs/results-contract.md), as figures nobody computed.
    for block in (results["metrics"], *per_action.values()):
        block.update({name: block.get(name) for name in ALL_METRICS})
    results.update({
        "tool": "convnextpose-eval", "schema_version": 1, "skip_corrupt_s9": False, "dropped_sequences": [],
        "action_average": dict.fromkeys(ALL_METRICS),
        "per_subject": {"S9": {**dict.fromkeys(ALL_METRICS), "num_samples": 0}, "S11": {**dict.fromkeys(ALL_METRICS), "num_samples": 53}},
        "per_joint": {name: {"mpjpe": None} for name in EVAL_JOINT_NAMES},
        "inference": {"precision": "32-true", "tf32": False, "channels_last": True, "fold_batchnorm": True, "backend": "pytorch"},
        "comparison": None, "data_root": "/data/h36m", "created": "2026-12-07T00:00:00+00:00", "config_sha256": None,
        "files": {"predictions.json": {"sha256": "ef" * 32, "schema_version": 1}},
    })  # fmt: skip
    results["model"]["heatmap_size"] = 32
    results.update(extra)
    return results


def write_job(sweep: Path, name: str, results: dict | None = None, failure: dict | None = None) -> Path:
    job = sweep / name
    job.mkdir(parents=True)
    if results is not None:
        (job / "results.json").write_text(json.dumps(results))
    if failure is not None:
        (job / "failure.json").write_text(json.dumps(failure))
    return job


def write_hydra_config(job: Path, variant: str, protocol: int) -> None:
    """What Hydra saves into every job folder before the job starts."""
    (job / ".hydra").mkdir()
    config = {"variant": {"name": variant, "paper": PAPER[variant]}, "data": {"protocol": protocol}}
    OmegaConf.save(OmegaConf.create(config), job / ".hydra" / "config.yaml")


@pytest.fixture
def four_variant_sweep(tmp_path: Path) -> Path:
    """Job folders in launch order unlike report order: L ok, XS ok, M killed without a word, S failed."""
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", make_results("L", 50.3, 33.1))
    write_job(sweep, "1", make_results("XS", 62.0, 40.2))
    write_hydra_config(write_job(sweep, "2"), "M", 2)
    write_job(sweep, "3", failure={"variant": "S", "status": "failed",
                                   "error": "ConvNeXtPose_S.tar: head channels 512 do not match variant S (256)"})  # fmt: skip
    (sweep / ".submitit").mkdir()  # launcher bookkeeping, not a job
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return sweep


def main_table_row(markdown: str, variant: str) -> list[str]:
    section = markdown.split("## Results per variant")[1].split("## Per action")[0]
    rows = [line for line in section.splitlines() if line.startswith(f"| {variant} |")]
    assert len(rows) == 1, rows
    return [cell.strip() for cell in rows[0].strip("|").split(" | ")]


# --------------------------------------------------------------------------- compare_to_paper


def test_compare_protocol_2_uses_mpjpe() -> None:
    got = compare_to_paper({"mpjpe": 50.3, "pa_mpjpe": 33.0}, PAPER["L"], 2, BANDS)
    assert got == {"metric": "mpjpe", "ours": 50.3, "paper": 49.75, "diff": pytest.approx(0.55), "band": "excellent"}
    assert compare_to_paper({"mpjpe": 53.0}, PAPER["L"], 2, BANDS)["band"] == "acceptable"
    assert compare_to_paper({"mpjpe": 60.0}, PAPER["M"], 2, BANDS)["band"] == "review"
    assert compare_to_paper({"mpjpe": 50.1}, PAPER["M"], 2, BANDS)["band"] == "excellent"  # |-0.95|


def test_compare_protocol_1_uses_pa_mpjpe() -> None:
    got = compare_to_paper({"mpjpe": 99.0, "pa_mpjpe": 34.1}, PAPER["L"], 1, BANDS)
    assert got["metric"] == "pa_mpjpe" and got["paper"] == 32.8
    assert got["diff"] == pytest.approx(1.3) and got["band"] == "very good"


def test_compare_none_without_paper_figure() -> None:
    assert compare_to_paper({"mpjpe": 50.0, "pa_mpjpe": 35.0}, PAPER["XS"], 1, BANDS) is None
    assert compare_to_paper({"mpjpe": 50.0, "pa_mpjpe": 35.0}, PAPER["S"], 1, BANDS) is None
    assert compare_to_paper({"mpjpe": 50.0, "pa_mpjpe": 35.0}, None, 2, BANDS) is None
    with pytest.raises(ValueError):
        compare_to_paper({"mpjpe": 50.0}, PAPER["L"], 3, BANDS)


def test_band_edges_are_exclusive_and_float_safe() -> None:
    # 52.8 - 51.8 is 0.99999... in floats: still exactly 1 mm, so "very good", not "excellent".
    assert compare_to_paper({"mpjpe": 52.8}, PAPER["S"], 2, BANDS)["band"] == "very good"
    assert tolerance_band(-1.0, BANDS) == "very good"
    assert tolerance_band(4.999, BANDS) == "acceptable"
    assert tolerance_band(5.0, BANDS) == "review"
    assert tolerance_band(float("nan"), BANDS) == "review"
    # Order of the configured bands does not matter; other labels come straight from the config.
    assert tolerance_band(0.5, [(3.0, "fine"), (0.75, "spot on")]) == "spot on"


# --------------------------------------------------------------------------- format_summary


def test_format_summary_lists_everything() -> None:
    results = make_results("L", 50.3, 33.1)
    results["comparison"] = compare_to_paper(results["metrics"], results["paper"], 2, BANDS)
    text = format_summary(results)
    assert "ConvNeXtPose-L" in text and "protocol 2" in text and "53 samples" in text
    assert "flip test on" in text and "epoch 83" in text
    assert "49.75" in text and "+0.55" in text and "excellent" in text
    for action in ACTION_NAMES:
        assert action in text
    assert "SYNTHETIC" not in text and "ORACLE" not in text


def test_format_summary_is_loud_about_synthetic_and_oracle() -> None:
    text = format_summary(make_results("XS", 1.0, 1.0, synthetic=True, oracle=True, comparison=None))
    assert text.startswith("!!!") and text.rstrip().endswith("!!!")
    assert "SYNTHETIC SAMPLE" in text and "ORACLE" in text


# --------------------------------------------------------------------------- write_sweep_report


def test_sweep_entries_and_order(four_variant_sweep: Path) -> None:
    aggregate = write_sweep_report(four_variant_sweep, bands=BANDS, papers=PAPER)
    on_disk = json.loads((four_variant_sweep / BENCHMARK_JSON).read_text())
    assert on_disk == json.loads(json.dumps(aggregate))
    assert [e["variant"] for e in on_disk["entries"]] == ["XS", "S", "M", "L"]
    assert [e["status"] for e in on_disk["entries"]] == ["ok", "failed", "failed", "ok"]
    assert [e["job_dir"] for e in on_disk["entries"]] == ["1", "3", "2", "0"]
    xs, s, m, l = on_disk["entries"]
    assert s["error"].startswith("ConvNeXtPose_S.tar: head channels 512")
    assert m["error"] == DEAD_JOB_ERROR
    assert "results" not in s and "results" not in m
    assert l["results"]["metrics"]["mpjpe"] == 50.3
    assert l["comparison"]["band"] == "excellent" and l["comparison"]["diff"] == pytest.approx(0.55)
    assert xs["comparison"]["band"] == "review" and xs["comparison"]["diff"] == pytest.approx(5.39)
    assert on_disk["synthetic"] is False and on_disk["protocol"] == 2


def test_sweep_markdown(four_variant_sweep: Path) -> None:
    write_sweep_report(four_variant_sweep, bands=BANDS, papers=PAPER)
    markdown = (four_variant_sweep / BENCHMARK_MD).read_text()
    l_row = main_table_row(markdown, "L")
    assert l_row[1] == "ok" and "50.30" in l_row and "33.10" in l_row and "31.90" in l_row
    assert "49.75 (MPJPE)" in l_row and "+0.55" in l_row and "excellent" in l_row
    assert "8.38 / 8.38" in l_row and "4.26 / 4.30" in l_row and "12.3 (cpu x1)" in l_row  # ours / paper
    xs_row = main_table_row(markdown, "XS")
    assert "+5.39" in xs_row and "review" in xs_row
    s_row = main_table_row(markdown, "S")
    assert "FAILED" in s_row[1] and "head channels 512 do not match variant S (256)" in s_row[1]
    m_row = main_table_row(markdown, "M")
    assert DEAD_JOB_ERROR in m_row[1]
    assert "51.05 (MPJPE)" in m_row  # the paper's figure still shown, from the job's saved Hydra config
    assert "< 1 mm excellent" in markdown
    assert "synthetic" not in markdown.lower()
    per_action = markdown.split("## Per action")[1]
    assert "| Action | XS MPJPE | L MPJPE |" in per_action
    for action in ACTION_NAMES:
        assert f"| {action} |" in per_action
    assert "| Photo | - | - |" in per_action
    assert "| **Overall** | **62.00** | **50.30** |" in per_action


def test_stored_comparison_used_without_bands(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    stored = {"metric": "mpjpe", "ours": 53.0, "paper": 49.75, "diff": 3.25, "band": "acceptable"}
    write_job(sweep, "0", make_results("L", 53.0, 35.0, comparison=stored))
    aggregate = write_sweep_report(sweep)
    assert aggregate["entries"][0]["comparison"] == stored
    assert "+3.25" in main_table_row((sweep / BENCHMARK_MD).read_text(), "L")


def test_synthetic_note(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", make_results("M", 60.0, 40.0, synthetic=True))
    write_job(sweep, "1", make_results("L", 50.0, 33.0))
    aggregate = write_sweep_report(sweep, bands=BANDS)
    markdown = (sweep / BENCHMARK_MD).read_text()
    assert aggregate["synthetic"] is True
    assert "WARNING: SYNTHETIC SAMPLE" in markdown and "Affected: M." in markdown
    assert "**SYNTHETIC**" in main_table_row(markdown, "M")[1]
    assert "review" in main_table_row(markdown, "M")  # 60 vs 51.05


def assert_real_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 800
    pixels = image.reshape(-1, image.shape[-1])
    assert (pixels != pixels[0]).any(axis=1).mean() > 0.02  # not one flat colour: bars, lines and text drawn


def test_png_is_a_real_image(four_variant_sweep: Path) -> None:
    write_sweep_report(four_variant_sweep, bands=BANDS)
    assert_real_png(four_variant_sweep / BENCHMARK_PNG)


def test_every_job_failed(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", failure={"variant": "XS", "status": "failed", "error": "no checkpoint"})
    write_job(sweep, "1")
    aggregate = write_sweep_report(sweep, bands=BANDS, papers=PAPER)
    assert [e["status"] for e in aggregate["entries"]] == ["failed", "failed"]
    assert [e["variant"] for e in aggregate["entries"]] == ["XS", "1"]  # no Hydra config: named by its folder
    assert aggregate["synthetic"] is False and aggregate["protocol"] is None
    markdown = (sweep / BENCHMARK_MD).read_text()
    assert "no checkpoint" in markdown and DEAD_JOB_ERROR in markdown and "No job succeeded" in markdown
    assert_real_png(sweep / BENCHMARK_PNG)


def test_single_variant(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", make_results("M", 51.5, 35.0))
    aggregate = write_sweep_report(sweep, bands=BANDS)
    assert len(aggregate["entries"]) == 1 and aggregate["entries"][0]["comparison"]["band"] == "excellent"
    assert (sweep / BENCHMARK_PNG).read_bytes()[:8] == PNG_MAGIC


def test_mixed_protocols_use_each_entry_protocol(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", make_results("L", 50.3, 34.1, protocol=1))
    write_job(sweep, "1", make_results("L", 50.3, 34.1, protocol=2))
    write_job(sweep, "2", make_results("S", 52.0, 36.0, protocol=1))
    aggregate = write_sweep_report(sweep, bands=BANDS)
    entries = aggregate["entries"]
    assert aggregate["protocol"] is None
    assert [(e["variant"], e["protocol"]) for e in entries] == [("S", 1), ("L", 1), ("L", 2)]
    assert entries[0]["comparison"] is None  # the paper has no protocol 1 figure for S
    assert entries[1]["comparison"]["metric"] == "pa_mpjpe" and entries[1]["comparison"]["band"] == "very good"
    assert entries[2]["comparison"]["metric"] == "mpjpe" and entries[2]["comparison"]["band"] == "excellent"
    markdown = (sweep / BENCHMARK_MD).read_text()
    assert "32.80 (PA-MPJPE)" in main_table_row(markdown, "L P1")
    assert "49.75 (MPJPE)" in main_table_row(markdown, "L P2")
    assert "| Action | S P1 PA-MPJPE | L P1 PA-MPJPE | L P2 MPJPE |" in markdown
    assert_real_png(sweep / BENCHMARK_PNG)


def test_unreadable_results_is_a_failure(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, "0").joinpath("results.json").write_text("{not json")
    write_job(sweep, "1", make_results("L", 50.0, 33.0, protocol=3))
    entries = write_sweep_report(sweep, bands=BANDS)["entries"]
    assert [e["status"] for e in entries] == ["failed", "failed"]
    assert entries[0]["error"].endswith("results.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))")
    assert "at $.protocol, 3 is not one of [1, 2]" in entries[1]["error"]


def test_failed_job_without_figures_goes_last_without_papers(four_variant_sweep: Path) -> None:
    """Without the released variants' papers a failed job that recorded none cannot be placed by size."""
    entries = write_sweep_report(four_variant_sweep, bands=BANDS)["entries"]
    assert [e["variant"] for e in entries] == ["XS", "M", "L", "S"]


def test_reused_sweep_folder_reports_only_this_sweeps_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    old = write_job(sweep, "0", make_results("L", 50.0, 33.0))
    write_hydra_config(old, "L", 2)
    an_hour_ago = time.time() - 3600
    for path in (old / ".hydra", old):
        os.utime(path, (an_hour_ago, an_hour_ago))
    since = time.time_ns() - 1_000_000_000
    write_hydra_config(write_job(sweep, "1", make_results("XS", 60.0, 40.0)), "XS", 2)
    entries = write_sweep_report(sweep, bands=BANDS, since_ns=since)["entries"]
    assert [(e["variant"], e["job_dir"]) for e in entries] == [("XS", "1")]
    assert len(write_sweep_report(sweep, bands=BANDS)["entries"]) == 2


# --------------------------------------------------------------------------- the Hydra callback


def sweep_config(sweep: Path, bands: list | None = None) -> Any:
    """The parts of a composed config the callback reads: the sweep folder, the bands, the released variants' papers."""
    config: dict[str, Any] = {"hydra": {"sweep": {"dir": str(sweep)}},
                              "released": {name: {"name": name, "paper": paper} for name, paper in PAPER.items()}}  # fmt: skip
    if bands is not None:
        config["report"] = {"tolerance_bands": [list(band) for band in bands]}
    return OmegaConf.create(config)


def test_callback_fails_the_sweep_after_writing_reports(four_variant_sweep: Path, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        SweepReport().on_multirun_end(config=sweep_config(four_variant_sweep, BANDS))
    assert raised.value.code == 1
    for name in (BENCHMARK_JSON, BENCHMARK_MD, BENCHMARK_PNG, REPORT_HTML):
        assert (four_variant_sweep / name).is_file()
    out, err = capsys.readouterr()
    assert str(four_variant_sweep / BENCHMARK_MD) in out
    failed_lines = err.strip().splitlines()
    assert len(failed_lines) == 2
    assert failed_lines[0].startswith("FAILED S") and failed_lines[1].startswith("FAILED M")


def test_callback_passes_when_all_jobs_succeed(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", make_results("L", 53.0, 33.0))
    SweepReport().on_multirun_end(config=sweep_config(sweep, BANDS))
    assert capsys.readouterr().err == ""
    aggregate = json.loads((sweep / BENCHMARK_JSON).read_text())
    assert aggregate["entries"][0]["comparison"]["band"] == "acceptable"  # bands taken from report.tolerance_bands


def test_callback_fails_on_empty_sweep(tmp_path: Path) -> None:
    (tmp_path / "sweep").mkdir()
    with pytest.raises(SystemExit) as raised:
        SweepReport().on_multirun_end(config=sweep_config(tmp_path / "sweep"))
    assert raised.value.code == 1


def test_callback_fails_when_report_cannot_be_written(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        SweepReport().on_multirun_end(config=sweep_config(tmp_path / "missing"))
    assert raised.value.code == 1
    assert "could not be written" in capsys.readouterr().err


def test_sweep_markdown_has_per_joint_table_and_paper_size(tmp_path: Path) -> None:
    """The per-joint errors of each variant, and the paper's parameters and GFLOPs beside ours."""
    from convnextpose_eval.common.human36m import JOINT_NAMES

    sweep = tmp_path / "sweep"
    joints = {name: {"mpjpe": 10.0 + i} for i, name in enumerate(JOINT_NAMES[:17])}
    write_job(sweep, "0", make_results("XS", 62.0, 40.2, per_joint=joints))
    write_job(sweep, "1", make_results("L", 50.3, 33.1))  # an older results.json without per-joint figures
    write_sweep_report(sweep)
    markdown = (sweep / "BENCHMARK_REPORT.md").read_text()
    section = markdown.split("## Per joint")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Joint")]
    assert [row.split("|")[1].strip() for row in rows] == list(JOINT_NAMES[:17])  # Thorax is not evaluated
    assert rows[3].split("|")[2].strip() == "13.00" and rows[3].split("|")[3].strip() == "-"
    xs = main_table_row(markdown, "XS")
    assert f"3.53 / {PAPER['XS']['params_m']:.2f}" in xs and f"{PAPER['XS']['gflops'] - 0.04:.2f} / {PAPER['XS']['gflops']:.2f}" in xs


def test_reused_job_folder_rerun_by_this_sweep_is_reported(tmp_path: Path) -> None:
    """Hydra rewrites ``.hydra/hydra.yaml`` in a job folder it reuses (``sweep.resume=true``): the folder's times stay old."""
    sweep = tmp_path / "sweep"
    job = write_job(sweep, "0", make_results("L", 50.0, 33.0))
    write_hydra_config(job, "L", 2)
    (job / ".hydra" / "hydra.yaml").write_text("hydra: {}\n")
    an_hour_ago = time.time() - 3600
    for path in (job / ".hydra" / "hydra.yaml", job / ".hydra", job):
        os.utime(path, (an_hour_ago, an_hour_ago))
    since = time.time_ns() - 1_000_000_000
    assert write_sweep_report(sweep, bands=BANDS, since_ns=since)["entries"] == []
    (job / ".hydra" / "hydra.yaml").write_text("hydra: {}\n")  # rewritten in place, as Hydra does
    assert [e["job_dir"] for e in write_sweep_report(sweep, bands=BANDS, since_ns=since)["entries"]] == ["0"]
