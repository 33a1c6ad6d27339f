"""Packaging that pyproject.toml alone cannot say: the top-level configs/ ships as the convzoo.configs package.

Everything else (metadata, dependencies, scripts) is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["convzoo", "convzoo.*"]), "convzoo.configs"],
    package_dir={"convzoo.configs": "configs"},
)
