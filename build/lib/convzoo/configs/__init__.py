"""The Hydra config tree; installed as the ``convzoo.configs`` package (see setup.py)."""
