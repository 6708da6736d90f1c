"""The ``mfjax`` command line: parsing, one function per command, exit codes.

Owns: :mod:`~mfjax.cli.app` (the parser and ``main``).

May import: every other tier; none imports it. The only tier that prints,
reads arguments and exits.
"""

from mfjax.cli.app import main

__all__ = ["main"]
