"""The command line explains itself: entry points, help pages, "did you mean", and hints that run as printed.

Help pages and refusals go through each entry point's ``main`` in this process (torch is loaded already);
the printed hints run as printed, as subprocesses of this checkout's code. The settings a help page must
list are read from the composed configuration's own keys, independently of the code that writes the page.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest
from cli import PROJECT_ROOT, start_cli
from inprocess import run_in_process
from omegaconf import DictConfig

MODULE = "convnextpose_eval"
# A command in a message is written in backticks, to be copied as it is.
HINT = re.compile(r"`((?:python -m convnextpose_eval|python run_eval\.py|convnextpose-eval)\b[^`]*)`")


def _leaves(node: DictConfig, prefix: str = "") -> list[str]:
    """Every leaf key of a composed config, dotted; the released table counts as one entry."""
    keys = []
    for key in node.keys():
        name = f"{prefix}{key}"
        if name == "released":
            keys.append("released.<XS|S|M|L>.<field>")
            continue
        child = node._get_node(key)
        keys += _leaves(child, f"{name}.") if isinstance(child, DictConfig) and not child._is_none() else [name]
    return keys


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("entry_points")


def _main_in_process(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """``python -m convnextpose_eval ARGS`` through the console script's function, in this process: its exit
    status, stdout and stderr. The command name the call sets is undone afterwards."""
    from convnextpose_eval.cli import command
    from convnextpose_eval.common import errors

    monkeypatch.setattr(errors, "_command", [errors.command()])
    capsys.readouterr()
    try:
        status = command.main(list(args), prog=f"python -m {MODULE}")
    except SystemExit as exc:  # argparse's --help
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    printed = capsys.readouterr()
    return int(status or 0), printed.out, printed.err


def test_help_lists_every_setting_in_one_line_with_its_description(compose, root, capsys, monkeypatch):
    """Each key the configuration holds (XS's, so that the variant's sections are filled) has a line with its value and a description."""
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(root))
    status, stdout, stderr = _main_in_process(["--help", "variant=XS"], capsys, monkeypatch)
    assert status == 0, stderr
    page = stdout.splitlines()
    expected = _leaves(compose("variant=XS"))
    assert len(expected) > 60, expected
    for key in expected:
        lines = [line for line in page if line.startswith(f"  {key}=") or line.startswith(f"  {key} ")]
        assert len(lines) == 1, f"{key}: {lines}"
        value, _, description = lines[0].strip().partition(" ")
        assert len(description.strip()) >= 10, f"{key} has no description: {lines[0]!r}"
    assert "  variant.backbone.depths=[2, 2, 6, 2] " in stdout  # the composed value: XS is Atto (docs/protocol.md, "The four architectures")
    # Grouped: a header per section, and the config groups with every option file shipped.
    for section in ("paths", "variant", "data", "trainer", "report", "bench", "export"):
        assert any(line.startswith(f"[{section}] ") for line in page), section
    variants = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "variant").glob("*.yaml"))
    [groups] = [line for line in page if line.startswith("variant: ")]
    assert sorted(groups.removeprefix("variant: ").split(", ")) == variants
    assert "EvalConfig" not in stdout and "!!python" not in stdout, "no internal names or YAML dumps"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("export", "--help", "variant=L"), ("export.opset=N", "  export.opset=17 ", "  variant.name=L ")),
        (("bench", "--help"), ("(a) eager_fp32_ips", "(d) data_ips", "  bench.images=64 ", "  bench.repeats=3 ")),
        (("inspect", "--help"), ("usage: convnextpose-eval inspect", "--json")),
    ],
)
def test_subcommands_have_help(args, expected, capsys, monkeypatch):
    """``bench --help`` and ``export --help`` used to exit 2. Run in this process (torch is loaded already)
    through the console script's function, its dispatch included: ``python -m convnextpose_eval.bench``
    calls the same ``main``."""
    from convnextpose_eval.cli import command
    from convnextpose_eval.common import errors

    monkeypatch.setattr(errors, "_command", [errors.command()])  # the command name the call sets is undone afterwards
    try:
        status = command.main(list(args))
    except SystemExit as exc:  # argparse's --help
        status = exc.code
    assert status == 0
    printed = capsys.readouterr().out
    for text in expected:
        assert text in printed, f"{text!r} missing:\n{printed[-2000:]}"


def test_compare_subcommand_is_wired(capsys, monkeypatch):
    """``compare`` reaches convnextpose_eval.cli.compare (its own --help), or says in one line that it is not there."""
    status, stdout, stderr = _main_in_process(["compare", "--help"], capsys, monkeypatch)
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    try:
        import convnextpose_eval.cli.compare  # noqa: F401
    except ModuleNotFoundError:
        assert status == 2 and error_lines == ["error: compare: this installation has no compare command yet "
                                               "(module convnextpose_eval.cli.compare is missing)"], stderr  # fmt: skip
    else:
        assert status == 0 and "usage" in stdout.lower(), stdout + stderr


def test_demo_with_a_data_root_that_is_not_a_sample_is_refused(root, tmp_path, monkeypatch):
    """``experiment=demo data.root=X`` used to generate a 108 MB sample at X: refused up front, nothing left behind."""
    missing = tmp_path / "nonexistent"
    done = run_in_process(monkeypatch, root, "experiment=demo", "variant=XS", f"data.root={missing}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2, done.describe()
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: data.root={missing}: not a generated synthetic sample (no SYNTHETIC_SAMPLE.json)"), line
    assert not missing.exists(), "nothing may be generated there"
    assert not (tmp_path / "run").exists(), "a refused run leaves no folder"


def _run_hint(command: str, root: Path, original: str) -> str:
    """Run a printed command: it must succeed, fail for another reason, or get past every up-front check into
    a job, where it is stopped (the demo sweeps are minutes of work). A job has started once Hydra has saved
    its composed config in the job's folder, named after its variant. Started as the other runs are
    (``cli.start_cli``: forked from the session's pre-imported server), with the printed words alone."""
    words = shlex.split(command)
    if words[0] != "python":  # the console script is the package's module
        module, args = MODULE, words[1:]
    elif words[1] == "-m":
        module, args = words[2], words[3:]
    else:
        assert words[1] == "run_eval.py", command
        module, args = None, words[2:]
    process = start_cli(root, *args, module=module, as_written=True, shared_exports=False)
    outputs, deadline = root / "outputs", time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            started = sorted(outputs.glob("*/*/*/.hydra/config.yaml")) + sorted(outputs.glob("*/*/.hydra/config.yaml"))
            if started:
                return f"started job {started[0].parent.parent.name}"
            time.sleep(0.1)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert process.returncode == 0 or (errors and errors[-1] != original), f"{command}: exit {process.returncode}\n{err[-2000:]}"
    return f"exit {process.returncode}"


@pytest.mark.slow
def test_every_hint_runs_as_printed(eval_root_with_sample, capsys, monkeypatch):
    """Each command the tool suggests in its messages on the sample, run exactly as printed."""
    scenarios = [
        ((), MODULE),                                             # no data.root: try the demo
        (("experiment=demo",), MODULE),                           # the demo without -m: one variant=auto run
        (("experiment=demo", "variant=XS,S", "data.protocol=1"), MODULE),  # a sweep without -m
        (("varient=XS",), MODULE),                                # a typo: the help page
        (("varient=XS",), None),                                  # the same through run_eval.py
    ]
    from convnextpose_eval.cli import command
    from convnextpose_eval.common import errors

    monkeypatch.setattr(errors, "_command", [errors.command()])
    monkeypatch.setenv("CONVNEXTPOSE_EVAL_ROOT", str(eval_root_with_sample("hints_ask")))
    hints: dict[str, str] = {}
    for args, module in scenarios:  # refused up front: asked in this process, through each entry point's main()
        status = command.main(list(args), prog="python -m convnextpose_eval" if module else "python run_eval.py")
        error_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert status == 2 and len(error_lines) == 1 and error_lines[0].startswith("error: "), error_lines
        if module is None:  # named as the user typed it, with the closest setting
            assert error_lines == ["error: varient: no such setting; did you mean variant? (`python run_eval.py --help` lists them all)"]
        found = HINT.findall(error_lines[0])
        assert found, f"no command suggested in {error_lines[0]!r}"
        for hint in found:
            hints.setdefault(hint, error_lines[0])
    assert {"python -m convnextpose_eval -m experiment=demo", "python run_eval.py --help"} <= set(hints), hints
    outcomes = {command: _run_hint(command, eval_root_with_sample("hints_run"), original) for command, original in hints.items()}
    # The demo is a sweep over the released variants: its first job is XS, not one variant=auto run.
    assert outcomes["python -m convnextpose_eval -m experiment=demo"] == "started job 0_XS", outcomes
    assert outcomes["python -m convnextpose_eval --help"] == outcomes["python run_eval.py --help"] == "exit 0", outcomes
