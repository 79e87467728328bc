"""Evaluate ConvNeXtPose checkpoints on Human3.6M.

    python run_eval.py variant=L ckpt_path=ConvNeXtPose_L.tar data.root=/data/Human36M
    python run_eval.py -m variant=XS,S,M,L paths.checkpoint_dir=ckpts data.root=/data/Human36M
    python run_eval.py -m experiment=demo        # bundled synthetic sample, offline

See conf/eval.yaml for every setting and README.md for the details.
"""

import os

import hydra
from omegaconf import DictConfig

os.environ.setdefault("CONVNEXTPOSE_EVAL_ROOT", os.path.dirname(os.path.abspath(__file__)))


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """The Hydra task: one evaluation per job (see convnextpose_eval.evaluate.run_job)."""
    from convnextpose_eval.evaluate import run_job

    run_job(cfg)


if __name__ == "__main__":
    main()
