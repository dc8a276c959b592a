"""Package discovery, the one thing pyproject.toml cannot say here.

The repository root is the ``fireflyfs`` package: each top-level folder
(``common``, ``client``, ...) installs as ``fireflyfs.<folder>``. setuptools'
``packages.find`` in pyproject.toml names packages after their folders and
cannot add the prefix, so the list is computed here from every folder with an
``__init__.py``, tests excluded. Everything else (metadata, dependencies,
entry points, tool settings) is in pyproject.toml. setuptools never packs this
script itself into the ``fireflyfs`` package it maps the root to.
"""

from setuptools import find_packages, setup

setup(
    packages=[f"fireflyfs.{name}" for name in find_packages(exclude=["tests", "tests.*"])],
    package_dir={"fireflyfs": "."},
)
