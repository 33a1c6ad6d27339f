"""The error policy: what a user can fix is reported in one line; everything else keeps its traceback.

Every error class convzoo raises lives here, with the exit code each gets from ``train.py``,
``convzoo-train`` and ``python -m convzoo``:

* [`ConfigError`][convzoo.errors.ConfigError] (and its kinds [`CheckpointError`][convzoo.errors.CheckpointError], [`RunDirectoryError`][convzoo.errors.RunDirectoryError],
  [`DataNotFoundError`][convzoo.errors.DataNotFoundError], [`CorruptDataError`][convzoo.errors.CorruptDataError]): something the user wrote -- a config
  value, a command-line override, a spec key, a file path -- is wrong. The message names the key
  the user wrote first, then the layer, the bad value, what is accepted and the fix. Exit code 2.
* [`MissingExtraError`][convzoo.errors.MissingExtraError]: an optional dependency is not installed; the message names the extra
  to install. Exit code 2.
* [`NonFiniteLossError`][convzoo.errors.NonFiniteLossError]: the training loss became NaN or infinite. The message names the
  epoch, step and learning rate and what to try. Exit code 3.
* [`ExportError`][convzoo.errors.ExportError]: an exporter could not turn a network into an artifact. Exit code 1.
* Any other exception is a bug (ours, or in a user's own block) and is raised with its traceback.

Examples:
    >>> error = ConfigError("data: batch_size=0 must be at least 1.\\nSet data.batch_size=128.")
    >>> one_line(error), exit_code(error), exit_code(KeyError("bug"))
    ('data: batch_size=0 must be at least 1. Set data.batch_size=128.', 2, None)
    >>> suggest("max_epoch", ["max_epochs", "min_epochs"])
    " Did you mean 'max_epochs' or 'min_epochs'?"
    >>> str(at("data", "batch_size=0 must be at least 1.")), str(at("data", "data.batch_size=0 must be at least 1."))
    ('data: batch_size=0 must be at least 1.', 'data.batch_size=0 must be at least 1.')
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable

__all__ = ["ConfigError", "CheckpointError", "CorruptDataError", "DataNotFoundError", "ExportError",
           "MissingExtraError", "NonFiniteLossError", "RunDirectoryError", "about", "at", "closest", "exit_code",
           "one_line", "report", "suggest"]


class ConfigError(ValueError):
    """A config names something that does not exist or passes arguments that do not fit.

    An error about one argument of one spec layer says which ([`about`][convzoo.errors.about]), so that the spec can
    name the key the user wrote when an interpolation brought the value there. ``train.py``,
    ``convzoo-train`` and ``python -m convzoo`` report it as one ``error:`` line with exit code 2.

    Attributes:
        argument: the block argument the error is about (``None``: not about one argument).
        layer: the index of the spec layer it is about (``None``: not about one layer).

    Examples:
        >>> from convzoo import build_block
        >>> try:
        ...     build_block({"block": "conv", "kernel_size": 0, "out_channels": 8}, in_channels=3)
        ... except ConfigError as error:
        ...     print(error)
        block 'conv': kernel_size=0 is out of range; it must be >= 1.
    """

    argument: str | None = None
    layer: int | None = None


def about(error: ConfigError, argument: str | None = None, layer: int | None = None) -> ConfigError:
    """``error``, marked as being about ``argument`` (of the spec layer ``layer``); returns it, for ``raise``."""
    if argument is not None:
        error.argument = argument
    if layer is not None:
        error.layer = layer
    return error


def at(where: str, problem: ConfigError | str) -> ConfigError:
    """``problem`` named by where it is (a config key, a layer, a file): ``where: message``, the one way errors say so.

    A message that names ``where`` already (``data.batch_size=0 ...``, ``data: ...``) is left as it is, so
    a location is never named twice. A [`ConfigError`][convzoo.errors.ConfigError] keeps its kind (a [`CheckpointError`][convzoo.errors.CheckpointError]
    stays one) and what it is [`about`][convzoo.errors.about]; an empty ``where`` returns it unchanged. For ``raise``.

    Examples:
        >>> error = at("model.act", about(ConfigError("Unknown activation 'relux'."), "act"))
        >>> str(error), error.argument, str(at("model.act", error)) == str(error)
        ("model.act: Unknown activation 'relux'.", 'act', True)
    """
    error = problem if isinstance(problem, ConfigError) else ConfigError(problem)
    where = where.rstrip(": ")
    if not where or re.match(rf"{re.escape(where)}(?:$|[.\[:=])", str(error)):
        return error
    named = type(error)(f"{where}: {error}")
    return about(named, error.argument, error.layer)


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates that look like ``name`` (did-you-mean suggestions)."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Human-readable 'did you mean' fragment, empty when nothing is close."""
    near = closest(name, candidates)
    return f" Did you mean {' or '.join(repr(c) for c in near)}?" if near else ""


class CheckpointError(ConfigError):
    """``ckpt_path`` (or ``resume``) names a file that is missing, unreadable, or from another model."""


class RunDirectoryError(ConfigError):
    """The run directory holds another run's records, or another process trains there ([`convzoo.runs.directory`][convzoo.runs.directory])."""


class DataNotFoundError(ConfigError, FileNotFoundError):
    """The dataset files are not where the config says, or cannot be read (the message names the path and the fixes)."""


class CorruptDataError(ConfigError):
    """A dataset file exists but cannot be read as what it should be (truncated, wrong content)."""


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ExportError(RuntimeError):
    """An exporter could not turn the network into an artifact (the cause is chained)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite, so the run stopped (the message says where and what to try)."""


#: The exit code of each error the user can act on, first match wins; anything else is a bug.
_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, 2), (MissingExtraError, 2), (NonFiniteLossError, 3), (ExportError, 1),
)


def exit_code(error: BaseException) -> int | None:
    """The process exit code for an error the user can act on, ``None`` for a bug (keep the traceback)."""
    return next((code for kind, code in _EXIT_CODES if isinstance(error, kind)), None)


def one_line(error: BaseException | str) -> str:
    """The error's message with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(error).split())


def report(error: BaseException) -> int:
    """Print ``error: <message>`` on one line to stderr and return the exit code for it."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    return exit_code(error) or 1
