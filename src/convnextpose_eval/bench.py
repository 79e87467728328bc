"""``python -m convnextpose_eval.bench``: the same as ``convnextpose-eval bench`` (the tool lives in ``cli/bench.py``)."""

import sys

from .cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
