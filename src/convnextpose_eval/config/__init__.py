"""The configuration room: the typed schema, composition outside ``run_eval.py`` and up-front value checks."""
