"""``python -m convnextpose_eval ARGS``: the same as ``convnextpose-eval ARGS`` (see convnextpose_eval.cli.command)."""

import sys

from .cli.command import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m convnextpose_eval"))
