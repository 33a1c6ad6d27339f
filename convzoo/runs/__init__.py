"""Run directories: one run per directory (:mod:`convzoo.runs.directory`), reading them afterwards
(:mod:`convzoo.runs.read`), their curves (:mod:`convzoo.runs.plots`) and comparing runs
(:mod:`convzoo.runs.compare`). No Lightning."""

from convzoo.runs.read import *  # noqa: F403
from convzoo.runs.read import __all__  # noqa: F401
