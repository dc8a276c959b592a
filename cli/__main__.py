"""``python -m fireflyfs.cli``: the same as the ``ffs`` command."""

from fireflyfs.cli.main import cli

cli()
