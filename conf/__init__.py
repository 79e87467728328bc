"""Hydra's configuration tree, shipped inside the package as ``convnextpose_eval.conf``."""
