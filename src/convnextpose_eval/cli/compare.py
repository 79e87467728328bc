"""``convnextpose-eval compare RUN_A RUN_B [...] [--html [FILE]]``: the command line of the comparison in ``report/compare.py``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..common.atomic import atomic_write_bytes, errno_text
from ..common.errors import EvalError, one_line
from ..report.compare import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    DEFAULT_TOP,
    CompareError,
    compare_runs,
    format_comparison,
    read_run,
)
from ..report.html import compare_page

# Where ``--html`` without a file name writes the page (the current folder).
DEFAULT_HTML = "comparison.html"


class _OneLineParser(argparse.ArgumentParser):
    """Usage mistakes in the tool's one-line form (``error: ...``, exit status 2), the usage on ``--help``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="convnextpose-eval compare",
        description="Compare evaluation runs over the test images both scored: each figure's difference B - A, "
        "paired bootstrap 95%% intervals for MPJPE and PA-MPJPE, the actions and joints that changed most. "
        "With more than two runs, each is compared with the first.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders (or their results.json); the first is A")
    parser.add_argument("--json", action="store_true", help="end with one line holding the comparison as a JSON object")
    parser.add_argument("--md", action="store_true", help="Markdown tables instead of text")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the bootstrap draws (default {DEFAULT_SEED})")
    parser.add_argument("--html", nargs="?", const=Path(DEFAULT_HTML), type=Path, metavar="FILE",
                        help=f"also write a self-contained page of the comparison (default file: ./{DEFAULT_HTML}; docs/report.md)")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"how many actions and joints to list (default {DEFAULT_TOP})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; a bad folder or a mismatched test set gives one ``error:`` line and exit status 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if len(args.runs) < 2:
            raise CompareError("give at least two run folders: RUN_A RUN_B")
        if args.resamples < 100 or args.top < 0 or args.seed < 0:
            raise CompareError(f"--resamples must be at least 100, --top and --seed at least 0; got {args.resamples}, {args.top} and {args.seed}")
        runs = [read_run(path) for path in args.runs]
        baseline = runs[0]
        comparisons = [(run, compare_runs(baseline, run, args.resamples, args.seed)) for run in runs[1:]]
        if args.html is not None:
            if args.html.is_dir():
                raise CompareError(f"{args.html}: is a folder; give --html a file name, such as {args.html / DEFAULT_HTML}")
            content = compare_page([(baseline, run, comparison) for run, comparison in comparisons], args.resamples, args.seed)
            try:
                atomic_write_bytes(args.html, content)
            except OSError as exc:
                raise CompareError(f"{args.html}: could not be written ({errno_text(exc)})") from None
    except EvalError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    texts = [format_comparison(comparison, baseline, run, args.top, args.md) for run, comparison in comparisons]
    print("\n\n".join(texts))
    if args.html is not None:
        print(f"page: {args.html}")
    if args.json:
        objects = [comparison for _, comparison in comparisons]
        print(json.dumps(objects[0] if len(objects) == 1 else {"comparisons": objects}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
