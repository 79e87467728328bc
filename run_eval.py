"""Evaluate ConvNeXtPose checkpoints on Human3.6M (``python run_eval.py --help`` for the commands).

    python run_eval.py -m experiment=demo        # bundled synthetic sample, offline
    python run_eval.py variant=L ckpt_path=ConvNeXtPose_L.tar data.root=/data/Human36M
    python run_eval.py -m variant=XS,S,M,L paths.checkpoint_dir=ckpts data.root=/data/Human36M
"""

import sys
import warnings

import hydra
from omegaconf import DictConfig

from convnextpose_eval.config.checks import quote_home_paths
from convnextpose_eval.config.compose import CONFIG_MODULE, CONFIG_NAME, composition_error
from convnextpose_eval.config.schema import register_schema


@hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME, version_base="1.3")
def main(cfg: DictConfig) -> None:
    """The Hydra task: one evaluation per job (see convnextpose_eval.evaluation.run_job)."""
    from convnextpose_eval.evaluation import run_job

    run_job(cfg)


if __name__ == "__main__":
    # Deprecation notices of Lightning's dependencies, printed at import, say nothing about the results.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*treespec.*")
    register_schema()
    sys.argv[1:] = quote_home_paths(sys.argv[1:])
    if not {"--help", "-h", "--hydra-help", "--info", "-i"} & set(sys.argv[1:]):
        problem = composition_error(sys.argv[1:])
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(2)
    main()
