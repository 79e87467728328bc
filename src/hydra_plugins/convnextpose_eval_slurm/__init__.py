"""Hydra instantiates launchers only from classes defined under ``hydra_plugins``: the project's SLURM
launcher (``conf/hydra/launcher/slurm.yaml``), defined in :mod:`convnextpose_eval.run.slurm_launcher`."""

try:
    from convnextpose_eval.run.slurm_launcher import WatchedSlurmLauncher
except ImportError:  # hydra-submitit-launcher (the [slurm] extra) is not installed: no SLURM launcher to offer
    pass
else:

    class SlurmLauncher(WatchedSlurmLauncher):
        """``hydra/launcher=slurm``: submitit's SLURM launcher watched with squeue."""
