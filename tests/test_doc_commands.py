"""Commands the docs show that no other test runs, run as the pages show them (tests/doc_commands.py)."""

from __future__ import annotations

import json

import pytest
from cli import PROJECT_ROOT, run_cli
from doc_commands import page_command

pytestmark = pytest.mark.slow


def test_inspect_as_the_docs_show_it(synthetic_sample):
    """docs/getting-started.md's inspect, run in a folder holding the sample's ConvNeXtPose_L.tar."""
    words = page_command("convnextpose-eval inspect ConvNeXtPose_L.tar --json")
    done = run_cli(None, *words[1:], module="convnextpose_eval", cwd=synthetic_sample / "checkpoints")
    assert done.returncode == 0, done.describe()
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    # docs/protocol.md, "The four architectures" and "Checkpoints": L's head, depth bins and stored epoch.
    assert (facts["variant"], facts["head_channels"], facts["depth_dim"], facts["epoch"], facts["key_style"]) == ("L", 512, 64, 83, "legacy")


def test_compare_as_the_docs_show_it_prints_the_pages_example(demo_sweep_p1):
    """docs/tracking.md's compare on its MLflow demo sweep prints the table the page shows."""
    words = page_command("python -m convnextpose_eval.compare SWEEP/0_XS SWEEP/3_L --top 3", SWEEP=demo_sweep_p1)
    done = run_cli(None, *words[3:], module=words[2])
    assert done.returncode == 0, done.describe()
    page = (PROJECT_ROOT / "docs" / "tracking.md").read_text(encoding="utf-8")
    example = page[page.index("```text\n") + 8 :]
    example = example[: example.index("```")]
    for line in example.splitlines():
        if line != "...":
            assert line in done.stdout.splitlines(), f"{line!r} not printed:\n{done.stdout}"
