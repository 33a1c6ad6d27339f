"""``python -m convzoo``: list, summary, compare, export, predict and evaluate (`convzoo.cli.main`)."""

import sys

from convzoo.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
