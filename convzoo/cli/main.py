"""``python -m convzoo``: one parser for every subcommand (`convzoo.cli.inspect`: list, summary, compare;
`convzoo.cli.deploy`: export, predict, evaluate). Mistakes are reported in one line with the exit code
`convzoo.errors` gives them; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from convzoo.cli import deploy, inspect

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run one ``python -m convzoo`` command.

    Args:
        argv: the arguments after ``python -m convzoo`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 done, 1 an artifact that does not match its network, 2 a usage problem.

    Examples:
        >>> main(["list", "models"])  # doctest: +ELLIPSIS
        model ...
        0
    """
    parser = argparse.ArgumentParser(prog="python -m convzoo", description="convzoo's commands: look at blocks, models and runs; export, predict, evaluate.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect.add_commands(commands)   # list, summary, compare
    deploy.add_commands(commands)    # export, predict, evaluate
    args = parser.parse_args(argv)
    from convzoo.errors import exit_code, report

    try:
        return args.run(args)
    except Exception as error:
        if exit_code(error) is None:
            raise  # a bug: keep the traceback
        return report(error)


if __name__ == "__main__":
    sys.exit(main())
