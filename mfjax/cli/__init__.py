"""The ``mfjax`` command line: parsing, one module per command, exit codes.

Owns: :mod:`~mfjax.cli.app` (the top-level parser, ``main`` and the exit codes);
one module per command, each with ``add_parser(sub)`` and ``run(args)``:
:mod:`~mfjax.cli.demo`, :mod:`~mfjax.cli.fit`, :mod:`~mfjax.cli.recommend`,
:mod:`~mfjax.cli.evaluate`, :mod:`~mfjax.cli.similar`, :mod:`~mfjax.cli.cv` and
:mod:`~mfjax.cli.launch` (which also joins the processes of a ``fit``); and what
they share, :mod:`~mfjax.cli.options` (option types and groups) and
:mod:`~mfjax.cli.common` (reading files and models, reports, JSON, fit checks).

May import: every other tier; none imports it. The only tier that prints,
reads arguments and exits.
"""

from mfjax.cli.app import main

__all__ = ["main"]
