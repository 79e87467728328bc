"""Evaluate ConvNeXtPose checkpoints on Human3.6M from a checkout: the same as ``convnextpose-eval ARGS``.

    python run_eval.py -m experiment=demo        # bundled synthetic sample, offline
    python run_eval.py variant=L ckpt_path=ConvNeXtPose_L.tar data.root=/data/Human36M
    python run_eval.py --help                    # every setting, the commands
"""

import sys

from convnextpose_eval.cli.command import main as run_command


def main() -> int:
    """What ``python run_eval.py ARGS`` runs; its hints name the command so."""
    return run_command(prog="python run_eval.py")


if __name__ == "__main__":
    sys.exit(main())
