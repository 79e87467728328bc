"""``python -m convnextpose_eval.inspect``: the same as ``convnextpose-eval inspect`` (the tool lives in ``cli/inspect.py``)."""

import sys

from .cli.inspect import main

if __name__ == "__main__":
    sys.exit(main())
