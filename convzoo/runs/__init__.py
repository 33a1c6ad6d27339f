"""Run directories: one run per directory ([`convzoo.runs.directory`][convzoo.runs.directory]), reading them afterwards
([`convzoo.runs.read`][convzoo.runs.read]), their curves ([`convzoo.runs.plots`][convzoo.runs.plots]) and comparing runs
([`convzoo.runs.compare`][convzoo.runs.compare]). No Lightning."""

from convzoo.runs.read import *  # noqa: F403
from convzoo.runs.read import __all__  # noqa: F401
