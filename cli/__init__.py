"""The ``ffs`` command (``fireflyfs.cli.main:cli``; also ``python -m fireflyfs.cli``).

The top layer: it may use the client, the launcher (deploy) and the benchmarks;
nothing below imports it. One module per command group: ``fs`` (ls, cat, put,
...), ``cluster``, ``admin`` and ``fsck`` (with ``fsck_findings``, the pure
vote per chunk, ``fsck_plan``, what a repair may do, and ``fsck_runner``,
gathering and repair), ``scrub``, ``bench``,
``bench_fabric``, ``testbed``; ``_output`` holds --json, tables and exit codes.
"""
