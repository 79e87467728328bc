"""``python -m convnextpose_eval.export``: the same as ``convnextpose-eval export`` (the tool lives in ``cli/export.py``)."""

import sys

from .cli.export import main

if __name__ == "__main__":
    sys.exit(main())
