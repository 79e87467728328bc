"""The Python API from several threads, and its silence: two concurrent ``evaluate()`` calls both finish (one
after the other) with the figures a lone run gives, and nothing reaches the process's stdout or stderr, not
even Lightning's progress bar (captured at the file-descriptor level)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from convnextpose_eval import evaluate

pytestmark = pytest.mark.slow

# Lightning's progress bar left on (its default): the API must keep it off the console by itself.
XS_P1 = ("experiment=demo", "variant=XS", "data.protocol=1", "backend=pytorch")


@pytest.fixture()
def threads_root(eval_root_with_sample, monkeypatch) -> Path:
    root = eval_root_with_sample("api_threads")
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(root))
    return root


def test_two_threads_evaluate_one_after_the_other_and_print_nothing(threads_root, tmp_path, capfd):
    outcomes: dict[str, object] = {}

    def call(name: str) -> None:
        try:
            outcomes[name] = evaluate(*XS_P1, run_dir=tmp_path / name)
        except BaseException as exc:  # noqa: BLE001 - what a thread raised is the finding
            outcomes[name] = exc

    workers = [threading.Thread(target=call, args=(name,)) for name in ("first", "second")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
    captured = capfd.readouterr()
    failures = {name: repr(value) for name, value in outcomes.items() if isinstance(value, BaseException)}
    assert not failures, failures
    assert captured.out == "" and captured.err == "", (captured.out[-2000:], captured.err[-2000:])
    first, second = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("first", "second"))
    assert first["num_samples"] == second["num_samples"] == 23
    assert first["metrics"] == second["metrics"], "the same run twice gives the same figures"
