"""A run's orchestration: its plan, its folder, launch and signals, resume, trackers, sweeps and the SLURM launcher."""
