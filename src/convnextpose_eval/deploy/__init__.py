"""Deployed formats side by side: build every format of a checkpoint, score and time them in one run (docs/deployment.md)."""
