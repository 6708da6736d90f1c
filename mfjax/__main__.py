"""``python -m mfjax``: the same as the ``mfjax`` command."""

import sys

from mfjax.cli.app import main

if __name__ == "__main__":
  sys.exit(main())
