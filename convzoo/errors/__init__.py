"""How mistakes are reported: the error policy ([`policy`][convzoo.errors.policy]: every error class, its exit
code, did-you-mean, where an error is, one-line reports). The checks that raise these errors live with what
they check (a builder's arguments: [`convzoo.arguments`][convzoo.arguments])."""

from convzoo.errors.policy import (
    CheckpointError, ConfigError, CorruptDataError, DataNotFoundError, ExportError, MissingExtraError,
    NonFiniteLossError, RunDirectoryError, about, at, closest, exit_code, one_line, report, suggest,
)

__all__ = ["ConfigError", "CheckpointError", "CorruptDataError", "DataNotFoundError", "ExportError",
           "MissingExtraError", "NonFiniteLossError", "RunDirectoryError", "about", "at", "closest", "exit_code",
           "one_line", "report", "suggest"]

# Reported (tracebacks, doctests, pickles) under their documented home, convzoo.errors.
for _error in (CheckpointError, ConfigError, CorruptDataError, DataNotFoundError, ExportError, MissingExtraError,
               NonFiniteLossError, RunDirectoryError):
    _error.__module__ = __name__
