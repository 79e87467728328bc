"""``python -m convnextpose_eval.sample OUT_DIR [--seed N]``."""

from .generator import main

main()
