"""The error policy: what a user can fix is reported in one line; everything else keeps its traceback.

* :class:`ConfigError` (and its subclasses :class:`CheckpointError`, :class:`RunDirectoryError`,
  ``convzoo.data.DataNotFoundError`` and ``convzoo.data.CorruptDataError``): something the user
  wrote -- a config value, a command-line override, a spec key, a file path -- is wrong. The
  message names the key, the bad value, what is accepted and the fix. ``train.py`` and
  ``python -m convzoo`` print it as one line and exit 2.
* :class:`NonFiniteLossError`: the training loss became NaN or infinite. The message names the
  epoch, step and learning rate and what to try; the entry points exit 3.
* Any other exception is a bug (ours, or in a user's own block) and is raised with its traceback.

Example:
    >>> error = ConfigError("data: batch_size=0 must be at least 1.\\nSet data.batch_size=128.")
    >>> one_line(error), exit_code(error), exit_code(KeyError("bug"))
    ('data: batch_size=0 must be at least 1. Set data.batch_size=128.', 2, None)
"""

from __future__ import annotations

import sys

from convzoo.registry import ConfigError, about

__all__ = ["ConfigError", "CheckpointError", "NonFiniteLossError", "RunDirectoryError", "about", "exit_code",
           "one_line", "report"]


class CheckpointError(ConfigError):
    """``ckpt_path`` (or ``resume``) names a file that is missing, unreadable, or from another model."""


class RunDirectoryError(ConfigError):
    """The run directory holds another run's records, or another process trains there (:mod:`convzoo.runs.directory`)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite, so the run stopped (the message says where and what to try)."""


_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = ((ConfigError, 2), (NonFiniteLossError, 3))


def exit_code(error: BaseException) -> int | None:
    """The process exit code for an error the user can act on, ``None`` for a bug (keep the traceback)."""
    return next((code for kind, code in _EXIT_CODES if isinstance(error, kind)), None)


def one_line(error: BaseException) -> str:
    """The error's message with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(error).split())


def report(error: BaseException) -> int:
    """Print ``error: <message>`` on one line to stderr and return the exit code for it."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    return exit_code(error) or 1
