"""The command line: ``convnextpose-eval ARGS``, ``python -m convnextpose_eval ARGS`` and ``python run_eval.py ARGS``.

All three run :func:`main`. ARGS are Hydra overrides (``variant=L data.root=DATA``, ``-m`` for a sweep,
``--help``), or a subcommand first: ``inspect FILE``, ``bench``, ``export``, ``compare RUN_A RUN_B``, ``deploy``.
The Hydra entry function lives here, inside the package, so an installed copy evaluates without the checkout.
"""

from __future__ import annotations

import importlib
import shlex
import sys
import warnings

import hydra
from omegaconf import DictConfig

from ..common.errors import command, set_command
from ..config.checks import quote_home_paths
from ..config.compose import (
    CONFIG_MODULE,
    CONFIG_NAME,
    composition_error,
    sweep_overrides,
)
from ..config.help import register_help_resolvers
from ..config.schema import register_schema

SUBCOMMANDS = {
    "inspect": "convnextpose_eval.cli.inspect",
    "bench": "convnextpose_eval.cli.bench",
    "export": "convnextpose_eval.cli.export",
    "compare": "convnextpose_eval.cli.compare",
    "deploy": "convnextpose_eval.cli.deploy",
}
# Arguments that make Hydra print something instead of running: nothing to check up front.
_SHOW_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc"}
_SWEEP_FLAGS = {"-m", "--multirun"}


@hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME, version_base="1.3")
def hydra_entry(cfg: DictConfig) -> None:
    """The Hydra task: one evaluation per job (see convnextpose_eval.run.evaluation.run_job)."""
    from ..run.evaluation import run_job

    run_job(cfg)


def _subcommand(name: str, argv: list[str]) -> int:
    module = importlib.import_module(SUBCOMMANDS[name])
    return int(module.main(argv) or 0)


def evaluate_command(argv: list[str]) -> int:
    """Check the overrides up front (one line on a bad one), then hand them to Hydra: a run or a ``-m`` sweep."""
    # Deprecation notices of Lightning's dependencies, printed at import, say nothing about the results.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*treespec.*")
    register_schema()
    register_help_resolvers()
    argv = quote_home_paths(argv)
    if not _SHOW_FLAGS & set(argv):
        swept = sweep_overrides(argv)
        if swept and not _SWEEP_FLAGS & set(argv):
            print(f"error: {swept[0]}: several values make a sweep, which needs -m: `{command()} -m {shlex.join(argv)}`", file=sys.stderr)
            return 2
        problem = composition_error(argv, check_values=True)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    sys.argv[1:] = argv
    hydra_entry()
    return 0


def main(argv: list[str] | None = None, prog: str = "convnextpose-eval") -> int:
    """Run a subcommand or an evaluation; ``prog`` is how hints name the command (as the user typed it)."""
    set_command(prog)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0], argv[1:])
    return evaluate_command(argv)
