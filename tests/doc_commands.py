"""The commands the documentation shows (README.md and docs/*.md), and how tests run them as written.

A test runs a page's command with :func:`page_command`, quoting the command exactly as the page shows it:
the call fails when no page shows it any more, and ``tests/test_docs.py`` fails when a page shows a
command that no test quotes and that is not listed below with the reason no test can run it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from cli import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
CI_SCRIPT = PROJECT_ROOT / ".ci" / "run"
SHELL_BLOCKS = ("bash", "sh", "shell", "console")
_FENCE = re.compile(r"^```(\S*)\s*$")

_REAL_DATA = ("needs the licensed Human3.6M data set, which no test has; its form on the sample (experiment=demo) "
              "is run by the tests of the same command line (tests/test_cli.py, tests/test_evaluate.py)")  # fmt: skip
_TIMING = ("a timing run of minutes; the bench itself is run, bounded by bench.images=8 bench.repeats=1, by "
           "tests/test_evaluate.py")  # fmt: skip

# Commands a page shows that no test runs as written, and why: the one place they are listed.
NOT_RUN: dict[str, str] = {
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu":
        "installs torch from PyTorch's own index: a network install that would replace the torch under test",
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130":
        "installs the CUDA build of torch from PyTorch's own index: a network install that would replace the torch under test",
    'python -m pytest -m "not slow"': "the suite's own fast tier: a test cannot run the suite it belongs to",
    'pip install -e ".[docs]" && mkdocs serve':
        "serves the site until stopped; tests/test_docs.py builds the same pages with `mkdocs build --strict`",
    'pip install -e ".[tracking]"': "an install; the dev extra that CI installs includes the tracking packages",
    "python run_eval.py variant=L data.root=DATA": _REAL_DATA,
    "python run_eval.py variant=L data.root=DATA data.protocol=1": _REAL_DATA,
    "python run_eval.py variant=auto ckpt_path=~/Downloads/ConvNeXtPose_M.tar data.root=DATA": _REAL_DATA,
    "python run_eval.py -m variant=XS,S,M,L paths.checkpoint_dir=CKPTS data.root=DATA": _REAL_DATA,
    "python run_eval.py variant=L data.root=DATA oracle=true": _REAL_DATA,
    "convnextpose-eval deploy variant=L data.root=DATA": _REAL_DATA,
    "python -m convnextpose_eval.bench experiment=demo variant=XS": _TIMING,
    "python -m convnextpose_eval.bench experiment=demo variant=XS trainer.precision=bf16-mixed": _TIMING,
    "python -m convnextpose_eval.bench variant=L data.root=DATA trainer=gpu data.batch_size=64":
        "needs a GPU and the Human3.6M data set",
    "python -m convnextpose_eval.sample.fullsize outputs/fullsize":
        "writes 8,695 images into the checkout; tests/test_sample_fullsize.py builds the same set with fewer images (--images)",
    "python -m convnextpose_eval.bench data.root=outputs/fullsize data.synthetic=true paths.checkpoint_dir=outputs/fullsize/checkpoints "
    "variant=XS data.batch_size=64 bench.images=256 bench.repeats=2": "a timing run of about 3.5 minutes on the full-size set above",
}

# Commands CI runs verbatim in .ci/run (tests/test_docs.py checks that it still does).
RUN_BY_CI: tuple[str, ...] = (
    "pip install torch==2.13.0 && pip install -e . && python run_eval.py -m experiment=demo",
    'pip install torch==2.13.0 && pip install -e ".[dev]" && python -m pytest',
    "scripts/slurm-local.sh down",
)


def pages() -> list[Path]:
    """Every page that may show commands: the README and the docs site's pages."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def _joined(lines: list[str]) -> list[str]:
    """Shell lines with ``\\`` continuations joined, blank lines and whole-line comments dropped."""
    commands: list[str] = []
    pending = ""
    for raw in lines:
        line = raw.strip()
        if pending:
            line = f"{pending} {line}"
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line and not line.startswith("#"):
            commands.append(re.sub(r"\s+", " ", line))
    if pending:
        commands.append(pending)
    return commands


def commands_of(page: Path) -> list[str]:
    """The commands of ``page``'s shell code blocks (fenced as bash, sh, shell or console; in the README also
    the indented blocks), in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[str] = []
    block: list[str] | None = None
    shell = False
    indented: list[str] = []
    previous_blank = True
    for line in lines:
        fence = _FENCE.match(line)
        if fence and block is None:
            block, shell = [], fence.group(1) in SHELL_BLOCKS
            continue
        if block is not None:
            if line.startswith("```"):
                found += _joined(block) if shell else []
                block = None
            else:
                block.append(line)
            continue
        if page == README and line.startswith("    ") and (previous_blank or indented):
            indented.append(line)
        elif indented and line.strip():
            found += _joined(indented)
            indented = []
        previous_blank = not line.strip()
    return found + _joined(indented)


def page_commands() -> dict[str, list[str]]:
    """Every command on a page -> the pages (relative to the checkout) that show it."""
    shown: dict[str, list[str]] = {}
    for page in pages():
        for command in commands_of(page):
            shown.setdefault(command, []).append(str(page.relative_to(PROJECT_ROOT)))
    return shown


def _substituted(word: str, placeholders: Mapping[str, object]) -> str:
    """``word`` with a placeholder replaced where it stands alone, as a setting's value, or before a ``/``."""
    key, sep, value = word.partition("=") if "=" in word and not word.startswith("-") else ("", "", word)
    for name, real in placeholders.items():
        if value == name or value.startswith(f"{name}/"):
            return f"{key}{sep}{real}{value[len(name):]}"
    return word


def page_command(command: str, placeholders: Mapping[str, object] | None = None, **more: object) -> list[str]:
    """``command``, which a page must show exactly like this, split into words with its placeholders
    (``OUT``, ``SWEEP``, ``DATA``, a file name) replaced: ``page_command("... hydra.run.dir=OUT", OUT=folder)``."""
    shown = page_commands()
    assert command in shown, f"no page shows the command `{command}` any more; update the test with the page"
    mapping = {**(placeholders or {}), **more}
    return [_substituted(word, mapping) for word in shlex.split(command)]
