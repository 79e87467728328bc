"""``python -m convnextpose_eval.compare``: the same as ``convnextpose-eval compare`` (the tool lives in ``cli/compare.py``)."""

import sys

from .cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
