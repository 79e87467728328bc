"""results.json's throughput leaves the first batch out (docs/deployment.md: every throughput the tool reports)."""

from __future__ import annotations

import time

import pytest

from convnextpose_eval.config.checks import checked_config
from convnextpose_eval.config.compose import compose_config
from convnextpose_eval.results.writer import ResultsWriter
from convnextpose_eval.run.evaluation import (
    build_datamodule,
    build_evaluator,
    build_trainer,
    inference_settings,
    run_settings,
)
from convnextpose_eval.run.plan import plan_run

FIRST_BATCH_DELAY_S = 1.5


@pytest.mark.slow
def test_the_first_batch_is_left_out_of_the_throughput(eval_root_with_sample, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(eval_root_with_sample("throughput")))
    settings = checked_config(compose_config(["variant=XS", "data=sample", "backend=pytorch", "data.batch_size=16",
                                              "trainer.progress_bar=false"]))  # fmt: skip
    module = build_evaluator(plan_run(settings))
    datamodule = build_datamodule(settings, module.arch.input_size)
    calls = []
    predict = module.predict_coords

    def slow_first_batch(images, forward_pass=None):
        # A first batch as slow as a session's start-up: what it costs must not be charged to the images.
        if not calls:
            time.sleep(FIRST_BATCH_DELAY_S)
        calls.append(images.shape[0])
        return predict(images, forward_pass)

    module.predict_coords = slow_first_batch
    writer = ResultsWriter(tmp_path, run_settings(settings, None), inference_settings(settings, module.describe_engine()))
    build_trainer(settings, [writer]).test(module, datamodule=datamodule, verbose=False)
    speed = writer.results["throughput"]
    count = writer.results["num_samples"]
    assert len(calls) >= 3 and speed["warmup_images"] == calls[0] == 16
    assert speed["timed_images"] == count - 16
    assert speed["seconds"] - speed["timed_seconds"] >= FIRST_BATCH_DELAY_S
    assert speed["images_per_s"] == pytest.approx(speed["timed_images"] / speed["timed_seconds"])
    # With the delay counted the rate would be far lower.
    assert speed["images_per_s"] > count / speed["seconds"]
