"""report.html (docs/report.md): one self-contained page per run, sweep, comparison and deployment matrix, opened in
a real headless Chromium with JavaScript on.

Each kind of page is built once per session: the run and sweep pages are those the demo sweep of the session
wrote (``demo_sweep_p1``), the comparison page is ``compare --html`` over two of its jobs, and the deployment
page is made from a deploy_results.json written here by hand with every field docs/report.md lists. The figures
a page shows are checked against the JSON files the run wrote, read here on their own.
"""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from browser import colour_pixels, distinct_colours, launched_browser, open_page

from convnextpose_eval.cli.compare import main as compare_main
from convnextpose_eval.common.errors import ConfigError, EvalError
from convnextpose_eval.common.human36m import ACTION_NAMES, EVAL_JOINT_NAMES
from convnextpose_eval.report.html import (
    markers,
    run_page,
    size_bound,
    weights_record,
    write_deploy_page,
)
from convnextpose_eval.results.paper import ORACLE_WARNING, SYNTHETIC_WARNING
from convnextpose_eval.results.worst_cases import (
    GROUND_TRUTH_COLOUR,
    PREDICTION_COLOUR,
    WorstCase,
)
from convnextpose_eval.run.folder import RunFolder

SAMPLE_P1 = 23  # test images of the sample on protocol 1 (S11)
# What docs/report.md promises: a run page on the whole protocol-2 test set with the default 24 worst frames.
FULL_TEST_SET = 8695
DOCUMENTED_BOUND_BYTES = 2_000_000
NETWORK_REFERENCE = re.compile(r"""(src|href|action)\s*=\s*["']?\s*(https?:|//)|url\(\s*["']?(https?:|//)|@import""", re.IGNORECASE)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def page_data(path: Path) -> dict:
    """The JSON block a page draws itself from."""
    text = path.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.DOTALL)
    assert match, f"{path}: no data block"
    return json.loads(match.group(1))


# --------------------------------------------------------------------------- the pages, built once


@pytest.fixture(scope="session")
def sweep_folder(demo_sweep_p1) -> Path:
    return demo_sweep_p1


@pytest.fixture(scope="session")
def run_folder(demo_sweep_p1) -> Path:
    return demo_sweep_p1 / "0_XS"


def compare(*args: str) -> tuple[int, str, str]:
    """``convnextpose-eval compare ARGS`` in this process (its imports are here already): status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = compare_main(list(args))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def comparison_page(demo_sweep_p1, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("compare_html") / "xs_vs_l.html"
    status, out, err = compare(str(demo_sweep_p1 / "0_XS"), str(demo_sweep_p1 / "3_L"), "--resamples", "1000", "--html", str(target))
    assert status == 0, err
    assert f"page: {target}" in out
    return target


def deploy_fixture() -> dict:
    """A deploy_results.json as the deploy command writes it (the shape docs/deployment.md gives, every field), figures made up."""

    def built(name: str, size: int, mpjpe: float, pa: float, diff: float, ci: tuple[float, float], p50: float, ips: float) -> dict:
        return {"format": name, "status": "ok", "reason": None, "size_bytes": size,
                "metrics": {"mpjpe": mpjpe, "pa_mpjpe": pa},
                "difference": {"mpjpe": {"value": diff, "ci95": list(ci)}, "pa_mpjpe": {"value": diff / 2, "ci95": [ci[0] / 2, ci[1] / 2]}},
                "latency_ms": {"batch_size": 1, "runs": 200, "p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5}, "throughput_ips": ips}  # fmt: skip

    def not_built(name: str, status: str, reason: str) -> dict:
        return {"format": name, "status": status, "reason": reason, "size_bytes": None, "metrics": None, "difference": None,
                "latency_ms": None, "throughput_ips": None}  # fmt: skip

    return {
        "reference": "pytorch-fp32", "num_samples": 49, "variant": "XS", "synthetic": True,
        "formats": [
            built("pytorch-fp32", 14_200_000, 754.73, 429.10, 0.0, (0.0, 0.0), 61.0, 16.4),
            built("onnx-fp32", 14_150_000, 754.73, 429.10, 0.000004, (-0.00001, 0.00002), 38.5, 26.0),
            built("onnx-fp16", 7_100_000, 754.90, 429.20, 0.17, (0.05, 0.29), 55.0, 18.2),
            built("onnx-int8", 3_700_000, 758.40, 431.00, 3.67, (2.10, 5.30), 21.0, 47.6),
            built("user:xs_pruned.onnx", 9_000_000, 761.00, 433.50, 6.27, (4.00, 8.50), 30.0, 33.3),
            not_built("tflite-fp32", "skipped", "tensorflow is not installed (pip install -e \".[deploy]\")"),
            not_built("openvino-int8", "failed", "openvino: calibration needs at least 300 images, the test set has 49"),
            not_built("tensorrt-fp16", "skipped", "no CUDA GPU"),
        ],
    }  # fmt: skip


@pytest.fixture(scope="session")
def deploy_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("deploy")
    (folder / "deploy_results.json").write_text(json.dumps(deploy_fixture(), indent=2), encoding="utf-8")
    written = write_deploy_page(folder)
    assert written == folder / "report.html"
    return folder


@pytest.fixture(scope="session")
def browser():
    with launched_browser() as launched:
        yield launched


def opened(browser, path: Path):
    """The page, drawn, after checking it stayed quiet: no console error, no failed load, no request off the file."""
    page, problems = open_page(browser, path)
    assert problems.all() == [], f"{path}: {problems.all()}"
    return page, problems


def assert_quiet(problems, path: Path) -> None:
    assert problems.all() == [], f"{path}: {problems.all()}"


def cell_texts(page, selector: str, column: int) -> list[str]:
    return page.eval_on_selector_all(f"{selector} tbody tr", f"rows => rows.map(r => r.children[{column}].textContent)")


def header_index(page, table: str, label: str) -> int:
    labels = page.eval_on_selector_all(f"{table} thead th", "cells => cells.map(c => c.textContent)")
    return labels.index(label)


# --------------------------------------------------------------------------- without a browser


@pytest.mark.slow
def test_every_folder_holds_one_self_contained_page(sweep_folder, comparison_page, deploy_folder):
    pages = [sweep_folder / "report.html", comparison_page, deploy_folder / "report.html"]
    pages += [job / "report.html" for job in sorted(sweep_folder.iterdir()) if (job / "results.json").is_file()]
    assert len(pages) == 3 + 4
    for path in pages:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("<!DOCTYPE html>") and "<script>" in text
        assert not NETWORK_REFERENCE.search(text), f"{path}: refers to something on the network: {NETWORK_REFERENCE.search(text).group(0)}"
    job = sweep_folder / "0_XS"
    assert not (job / ".convnextpose_eval.pending.json").exists(), "the run's file set was completed"
    assert {"results.json", "predictions.json", "worst_cases.png", "report.html"} <= {p.name for p in job.iterdir()}


@pytest.mark.slow
def test_the_run_page_keeps_the_worst_frames_with_their_crops(run_folder):
    """Default 24 worst frames, capped by the sample's 23 images: all of them, worst first, as predictions.json ranks them."""
    data = page_data(run_folder / "report.html")
    predictions = read_json(run_folder / "predictions.json")
    ranked = [entry["image_id"] for entry in sorted(predictions, key=lambda entry: -entry["mpjpe"])]
    assert [frame["image_id"] for frame in data["frames"]] == ranked[: min(24, SAMPLE_P1)]
    by_id = {entry["image_id"]: entry for entry in predictions}
    for frame in data["frames"]:
        assert frame["crop"].startswith("data:image/jpeg;base64,")
        assert frame["pred_cam"] == by_id[frame["image_id"]]["joint_cam"]
        truth = np.asarray(frame["gt_cam"])
        # The ground truth the page draws is the one the image was scored against: MPJPE recomputed from it.
        recomputed = np.linalg.norm(np.asarray(frame["pred_cam"]) - truth, axis=1).mean()
        assert recomputed == pytest.approx(by_id[frame["image_id"]]["mpjpe"], abs=0.02)
        assert truth[0].tolist() == [0.0, 0.0, 0.0], "root-relative"


def test_a_run_page_on_the_whole_test_set_stays_within_the_documented_bound():
    """8695 images (protocol 2) and 24 crops of noise, which JPEG compresses worst: under docs/report.md's 2 MB."""
    rng = np.random.default_rng(0)
    joints = rng.normal(0, 300, (17, 3)).round(3).tolist()
    predictions = [{"image_id": i, "joint_cam": joints, "bbox": [1.5, 2.5, 300.25, 300.25], "root_cam": [1.0, 2.0, 4000.0],
                    "action": ACTION_NAMES[i % 15], "subject": "S9" if i % 2 else "S11",
                    **{name: float(rng.uniform(10, 200)) for name in ("mpjpe", "pa_mpjpe", "pa_mpjpe_scaled", "n_mpjpe", "pck3d_150", "auc3d")},
                    "joint_mpjpe": rng.uniform(0, 300, 17).tolist()} for i in range(FULL_TEST_SET)]  # fmt: skip
    worst = [WorstCase(crop=rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), pred_xy=rng.uniform(0, 256, (17, 2)),
                       gt_xy=rng.uniform(0, 256, (17, 2)), image_id=i, action="Directions", error_mm=100.0,
                       gt_cam=rng.normal(0, 300, (17, 3))) for i in range(24)]  # fmt: skip
    results = {"variant": "L", "protocol": 2, "num_samples": FULL_TEST_SET, "metrics": {"mpjpe": 51.0}, "per_action": {}, "synthetic": False}
    content = run_page(results, predictions, worst)
    assert len(content) <= size_bound(24, FULL_TEST_SET) <= DOCUMENTED_BOUND_BYTES, (len(content), size_bound(24, FULL_TEST_SET))


def test_the_top_of_a_page_says_what_was_proven_about_the_weights():
    """An ONNX file is vouched for only when this run compared it with a checkpoint (docs/onnx.md: source_verified);
    an oracle run ran no network at all."""
    onnx = {"path": "/models/x.onnx", "sha256": "ab" * 32, "provider": "cpu", "onnxruntime_version": "1.20.0",
            "source_checkpoint_file": "ConvNeXtPose_XS.tar", "source_checkpoint_sha256": "cd" * 32}  # fmt: skip
    unchecked = weights_record({"inference": {"onnx": {**onnx, "source_verified": False}}, "checkpoint": None})
    assert len(unchecked) == 1 and unchecked[0]["sha256"] == "ab" * 32
    assert unchecked[0]["proof"].startswith("NOT checked against a checkpoint (the file says it was exported from ConvNeXtPose_XS.tar)")
    verification = {"checkpoint_sha256": "cd" * 32, "images_checked": 32, "batches_checked": 2, "batches_scored": 4,
                    "seed": 1234, "max_abs_diff": 1.2e-05, "tolerance": 0.001}  # fmt: skip
    checkpoint = {"path": "/ckpt/ConvNeXtPose_XS.tar", "sha256": "cd" * 32, "epoch": 68, "detected_variant": "XS", "key_style": "modern"}
    checked = weights_record({"inference": {"onnx": {**onnx, "source_verified": True, "verification": verification}}, "checkpoint": checkpoint})
    assert [record["sha256"] for record in checked] == ["ab" * 32, "cd" * 32]
    assert "compared with checkpoint ConvNeXtPose_XS.tar" in checked[0]["proof"] and "on 32 of the scored test images (2 of 4 batches, drawn with seed 1234)" in checked[0]["proof"]
    assert "1.2e-05 within tolerance 0.001" in checked[0]["proof"]
    assert "weights_only=True" in checked[1]["proof"] and "released XS architecture" in checked[1]["proof"]
    [oracle] = weights_record({"oracle": True, "checkpoint": None, "inference": {"backend": "pytorch"}})
    assert "no network ran" in oracle["proof"]
    assert markers({"oracle": True, "synthetic": True}) == [SYNTHETIC_WARNING, ORACLE_WARNING]


@pytest.mark.parametrize("frames", ["-1", "201"])
def test_the_number_of_worst_frames_is_bounded(compose, frames):
    from convnextpose_eval.config.checks import checked_config

    with pytest.raises(ConfigError, match=re.escape(f"report.worst_frames={frames}: must be 0 to 200")):
        checked_config(compose("experiment=demo", "variant=XS", f"report.worst_frames={frames}"))


def test_a_page_file_of_someone_else_is_not_removed(tmp_path):
    """report.html is one of the run's files: cleared when this tool wrote it (a results.json of ours beside it), kept
    and refused otherwise."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "report.html").write_text("<p>my notes</p>")
    folder = RunFolder(foreign)
    with pytest.raises(ConfigError, match=re.escape(str(foreign / "report.html"))):
        folder.clear_previous_results()
    assert (foreign / "report.html").read_text() == "<p>my notes</p>"
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "results.json").write_text(json.dumps({"tool": "convnextpose-eval"}))
    (ours / "report.html").write_text("<p>an earlier run's page</p>")
    RunFolder(ours).clear_previous_results()
    assert not (ours / "report.html").exists() and not (ours / "results.json").exists()


def test_a_deploy_folder_without_its_table_is_one_clear_error(tmp_path):
    with pytest.raises(EvalError, match=re.escape(f"{tmp_path / 'deploy_results.json'}: no such file")):
        write_deploy_page(tmp_path)
    (tmp_path / "deploy_results.json").write_text("{not json")
    with pytest.raises(EvalError, match="not readable JSON"):
        write_deploy_page(tmp_path)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.slow
def test_compare_html_refuses_a_folder_in_one_line(demo_sweep_p1, tmp_path):
    status, out, err = compare(str(demo_sweep_p1 / "0_XS"), str(demo_sweep_p1 / "1_S"), "--resamples", "100", "--html", str(tmp_path))
    assert status == 2 and err == f"error: {tmp_path}: is a folder; give --html a file name, such as {tmp_path / 'comparison.html'}\n" and out == ""
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- in the browser: a run's page


@pytest.mark.slow
def test_the_run_page_shows_its_figures_markers_and_weights(browser, run_folder):
    results = read_json(run_folder / "results.json")
    page, _ = opened(browser, run_folder / "report.html")
    markers = page.eval_on_selector_all(".marker", "nodes => nodes.map(n => n.textContent)")
    assert any("SYNTHETIC SAMPLE" in text for text in markers), markers
    weights = page.inner_text("#weights")
    assert results["checkpoint"]["sha256"] in weights and "weights_only=True" in weights
    # Every action's figures, as results.json holds them, in the table.
    table = "#per-action-table"
    names = cell_texts(page, table, 0)
    assert names == list(ACTION_NAMES)
    mpjpe = cell_texts(page, table, header_index(page, table, "MPJPE"))
    assert mpjpe == [f"{results['per_action'][action]['mpjpe']:.2f}" for action in ACTION_NAMES]
    # Categories as bars (one per action, joint and scored subject), and the histogram of every image's error.
    assert page.locator("#per-action-chart rect.bar").count() == len(ACTION_NAMES)
    assert page.locator("#per-joint-chart rect.bar").count() == len(EVAL_JOINT_NAMES)
    assert page.locator("#per-subject-chart rect.bar").count() == 1, "protocol 1 scores S11 only"
    histogram_total = sum(int(title.split(": ")[-1].split()[0]) for title in
                          page.eval_on_selector_all("#error-histogram rect.bar title", "ts => ts.map(t => t.textContent)"))  # fmt: skip
    assert histogram_total == results["num_samples"] == SAMPLE_P1
    headline = page.inner_text("#headline-table")
    assert f"{results['metrics']['mpjpe']:.2f}" in headline and f"{results['metrics']['pa_mpjpe']:.2f}" in headline
    screenshot = page.screenshot(full_page=True)
    assert distinct_colours(screenshot) > 200, "the page drew next to nothing"
    page.close()


@pytest.mark.slow
def test_the_run_tables_sort_by_a_clicked_column(browser, run_folder):
    page, problems = opened(browser, run_folder / "report.html")
    table = "#per-action-table"
    column = header_index(page, table, "PA-MPJPE")
    header = page.locator(f"{table} thead th").nth(column)
    header.click()
    ascending = [float(text) for text in cell_texts(page, table, column)]
    assert ascending == sorted(ascending) and len(set(ascending)) > 1
    header.click()
    descending = [float(text) for text in cell_texts(page, table, column)]
    assert descending == sorted(ascending, reverse=True)
    assert_quiet(problems, run_folder)
    page.close()


@pytest.mark.slow
def test_choosing_a_worst_frame_shows_that_frame_in_2d_and_3d(browser, run_folder):
    predictions = {entry["image_id"]: entry for entry in read_json(run_folder / "predictions.json")}
    page, problems = opened(browser, run_folder / "report.html")
    rows = page.locator("#frames-table tbody tr")
    assert rows.count() == SAMPLE_P1
    view, canvas, crop = page.locator("#frame-view"), page.locator("#frame-view canvas.view3d"), page.locator("#frame-view .crop img")
    first_id = int(view.get_attribute("data-image-id"))
    assert first_id == max(predictions.values(), key=lambda entry: entry["mpjpe"])["image_id"]
    before_canvas, before_crop = canvas.screenshot(), crop.get_attribute("src")
    # The 3D view drew both skeletons: ground truth and prediction in their colours, on a non-blank canvas.
    assert distinct_colours(before_canvas) > 50
    assert colour_pixels(before_canvas, GROUND_TRUTH_COLOUR) > 100 and colour_pixels(before_canvas, PREDICTION_COLOUR) > 100

    rows.nth(6).click()
    chosen = int(cell_texts(page, "#frames-table", 1)[6])
    assert chosen != first_id
    assert int(view.get_attribute("data-image-id")) == chosen
    assert page.inner_text("#frame-title").startswith(f"image {chosen} | {predictions[chosen]['action']} | {predictions[chosen]['subject']}")
    assert crop.get_attribute("src") != before_crop and crop.get_attribute("alt") == f"test crop of image {chosen}"
    figures = page.inner_text("#frame-figures")
    assert f"{predictions[chosen]['mpjpe']:.2f}" in figures and f"{predictions[chosen]['pa_mpjpe']:.2f}" in figures
    joint_errors = cell_texts(page, "#frame-joints", 1)
    assert joint_errors == [f"{value:.2f}" for value in predictions[chosen]["joint_mpjpe"]]
    after_choice = canvas.screenshot()
    assert after_choice != before_canvas, "the 3D view must show the chosen frame"

    # Turning the view: a drag across the canvas changes the angle and the drawing.
    yaw = float(canvas.get_attribute("data-yaw"))
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 170)
    page.mouse.down()
    page.mouse.move(box["x"] + 220, box["y"] + 150, steps=6)
    page.mouse.up()
    assert float(canvas.get_attribute("data-yaw")) == pytest.approx(yaw + 1.2, abs=0.05)
    assert canvas.screenshot() != after_choice
    assert_quiet(problems, run_folder)
    page.close()


# --------------------------------------------------------------------------- in the browser: sweep, comparison, deployment


@pytest.mark.slow
def test_the_sweep_page_puts_the_variants_side_by_side_and_links_their_pages(browser, sweep_folder):
    aggregate = read_json(sweep_folder / "benchmark_results.json")
    page, problems = opened(browser, sweep_folder / "report.html")
    assert cell_texts(page, "#variants-table", 0) == ["XS", "S", "M", "L"]
    pa = cell_texts(page, "#variants-table", header_index(page, "#variants-table", "PA-MPJPE"))
    assert pa == [f"{entry['results']['metrics']['pa_mpjpe']:.2f}" for entry in aggregate["entries"]]
    assert page.locator("#per-action-chart rect.bar").count() == 4 * len(ACTION_NAMES)
    assert page.locator("#per-joint-chart rect.bar").count() == 4 * len(EVAL_JOINT_NAMES)
    assert distinct_colours(page.screenshot(full_page=True)) > 100
    links = page.eval_on_selector_all("#variants-table a", "links => links.map(a => a.getAttribute('href'))")
    assert links == [f"{entry['job_dir']}/report.html" for entry in aggregate["entries"]]
    # Following a link opens that job's page, drawn.
    page.locator("#variants-table a").nth(3).click()
    page.wait_for_selector("main[data-rendered=true][data-kind=run]")
    assert page.title().startswith("ConvNeXtPose-L ")
    assert_quiet(problems, sweep_folder)
    page.close()


@pytest.mark.slow
def test_a_failed_job_stands_in_the_sweep_page_with_its_reason(browser, sweep_folder, tmp_path):
    import shutil

    from convnextpose_eval.report.sweep import write_sweep_report

    shutil.copytree(sweep_folder / "0_XS", tmp_path / "0_XS")
    (tmp_path / "1_S").mkdir()
    (tmp_path / "1_S" / "failure.json").write_text(json.dumps({"tool": "convnextpose-eval", "variant": "S", "status": "failed",
                                                              "error": "ConvNeXtPose_S.tar: not a checkpoint"}))  # fmt: skip
    write_sweep_report(tmp_path)
    page, problems = opened(browser, tmp_path / "report.html")
    assert cell_texts(page, "#variants-table", 1) == ["ok, SYNTHETIC", "FAILED: ConvNeXtPose_S.tar: not a checkpoint"]
    assert page.eval_on_selector_all("#variants-table a", "links => links.map(a => a.getAttribute('href'))") == ["0_XS/report.html"]
    assert page.locator("#per-action-chart rect.bar").count() == len(ACTION_NAMES), "only the job that ran has bars"
    assert_quiet(problems, tmp_path)
    page.close()


@pytest.mark.slow
def test_the_comparison_page_shows_paired_differences_and_the_frames_that_changed_most(browser, comparison_page, demo_sweep_p1):
    a, b = ({entry["image_id"]: entry for entry in read_json(demo_sweep_p1 / job / "predictions.json")} for job in ("0_XS", "3_L"))
    page, problems = opened(browser, comparison_page)
    metrics = page.inner_text("#cmp0-metrics")
    results_a, results_b = read_json(demo_sweep_p1 / "0_XS" / "results.json"), read_json(demo_sweep_p1 / "3_L" / "results.json")
    assert f"{results_b['metrics']['mpjpe'] - results_a['metrics']['mpjpe']:+.2f}" in metrics
    # One bar with its interval's whisker per action, the interval around the difference.
    assert page.locator("#cmp0-per-action-chart rect.bar").count() == len(ACTION_NAMES)
    rows = page.eval_on_selector_all("#cmp0-per-action-table tbody tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))")
    for name, _, _, difference, interval, count in rows:
        ids = [i for i in a if a[i]["action"] == name]
        assert float(difference) == pytest.approx(np.mean([b[i]["mpjpe"] - a[i]["mpjpe"] for i in ids]), abs=0.006)
        assert int(count) == len(ids)
        if len(ids) == 1:
            assert interval == "-", "one image: no interval"
            continue
        low, high = (float(x) for x in interval.strip("[]").split(", "))
        assert low <= float(difference) + 0.01 and float(difference) - 0.01 <= high
    assert page.locator("#cmp0-per-joint-chart rect.bar").count() == len(EVAL_JOINT_NAMES)
    changed = [int(text) for text in cell_texts(page, "#cmp0-frames-table", 0)]
    expected = sorted(a, key=lambda i: -abs(b[i]["mpjpe"] - a[i]["mpjpe"]))[: len(changed)]
    assert changed == expected and len(changed) == SAMPLE_P1
    canvas = page.locator("#cmp0-frame-view canvas.view3d")
    before = canvas.screenshot()
    assert distinct_colours(before) > 50
    page.locator("#cmp0-frames-table tbody tr").nth(2).click()
    assert int(page.locator("#cmp0-frame-view").get_attribute("data-image-id")) == changed[2]
    assert canvas.screenshot() != before
    assert_quiet(problems, comparison_page)
    page.close()


@pytest.mark.slow
def test_the_deployment_page_plots_accuracy_against_latency(browser, deploy_folder):
    fixture = deploy_fixture()
    page, problems = opened(browser, deploy_folder / "report.html")
    built = [entry for entry in fixture["formats"] if entry["status"] == "ok"]
    assert page.locator("#accuracy-latency circle.point").count() == len(built)
    labels = page.eval_on_selector_all("#accuracy-latency circle.point title", "ts => ts.map(t => t.textContent)")
    assert labels == [f"{entry['format']}: {entry['latency_ms']['p50']:.2f}, {entry['metrics']['mpjpe']:.2f}" for entry in built]
    assert cell_texts(page, "#formats-table", 0) == [entry["format"] for entry in fixture["formats"]]
    table = page.inner_text("#formats-table")
    rows = page.eval_on_selector_all("#formats-table tbody tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))")
    reasons = {row[0]: (row[1], row[2]) for row in rows}
    assert reasons["tflite-fp32"] == ("skipped", fixture["formats"][5]["reason"]) and reasons["openvino-int8"] == ("failed", fixture["formats"][6]["reason"])
    assert reasons["onnx-fp16"] == ("ok", "")
    assert "+3.670 [+2.10, +5.30]" in table, "the int8 difference with its interval"
    assert any("SYNTHETIC" in text for text in page.eval_on_selector_all(".marker", "ns => ns.map(n => n.textContent)"))
    # PA-MPJPE on the chart's axis when chosen.
    page.select_option("#tradeoff select", "pa_mpjpe")
    labels = page.eval_on_selector_all("#accuracy-latency circle.point title", "ts => ts.map(t => t.textContent)")
    assert labels[3] == f"onnx-int8: 21.00, {431.00:.2f}"
    assert distinct_colours(page.locator("#accuracy-latency").screenshot()) > 20
    assert_quiet(problems, deploy_folder)
    page.close()


@pytest.mark.slow
def test_a_notebook_shows_the_run_page_inline(browser, run_folder, tmp_path):
    """What ``result.show()`` gives a notebook (the kernel test: test_notebook_install.py), in a page of its own
    the way a notebook's output area holds it: the page is drawn inside the iframe, its script running."""
    from convnextpose_eval.api import Results

    result = Results.from_run_dir(run_folder)
    assert result.files["report.html"] == run_folder / "report.html"
    holder = tmp_path / "notebook_output.html"
    holder.write_text(f"<!DOCTYPE html><html><body><div class='output'>{result.show(height=700)._repr_html_()}</div></body></html>")
    page, problems = open_page(browser, holder, ready="iframe")
    inside = page.frame_locator("iframe")
    inside.locator("main[data-rendered=true]").wait_for(state="attached")
    assert "SYNTHETIC SAMPLE" in inside.locator(".marker").first.inner_text()
    assert inside.locator("#per-action-chart rect.bar").count() == len(ACTION_NAMES)
    assert inside.locator("#frames-table tbody tr").count() == SAMPLE_P1
    assert distinct_colours(page.locator("iframe").screenshot()) > 100
    assert_quiet(problems, holder)
    page.close()


def test_a_page_that_fetches_anything_fails_the_check(browser, tmp_path):
    """The checks themselves can fail: a page asking for a script on the network and logging an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<main data-rendered="true"></main><script src="https://cdn.example.invalid/lib.js"></script>'
                   '<script>console.error("boom")</script>')  # fmt: skip
    page, problems = open_page(browser, bad)
    page.wait_for_timeout(200)
    found = problems.all()
    assert any("network request: https://cdn.example.invalid/lib.js" in line for line in found), found
    assert any("boom" in line for line in found), found
    page.close()
