"""A fresh copy of the tree installs, as a wheel and editable, with every package and entry point.

Why: setup.py finds the packages (the repository root is the ``fireflyfs`` package), so
a new folder with an ``__init__.py`` must install with no list to edit, and a missing
one would only show on a user's machine. Method: copy the tree as a clone would have it
(no .git, .venv or build output), add a new subpackage to the copy, build a wheel and
an editable wheel from it with setuptools' own PEP 517 backend (no network), install
each into a directory, and import from it in an interpreter started without site
processing, so this checkout's own editable install cannot answer instead.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis",
                              ".pytest_cache")
ENTRY_POINTS = ("ffs = fireflyfs.cli.main:cli", "ffs = fireflyfs.client.fsspec_fs:FireflyFileSystem")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, pathlib.Path]:
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    new_package = source / "client" / "brand_new"
    new_package.mkdir()
    (new_package / "__init__.py").write_text('"""A subpackage no list names."""\nWHERE = "brand new"\n')
    packages = _packages_in(source)
    out = tmp / "wheels"
    code = textwrap.dedent(f"""
        from setuptools import build_meta
        wheel = build_meta.build_wheel({str(out)!r})
        editable = build_meta.build_editable({str(out)!r})
        print("BUILT", wheel, editable)
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    built_line = next(line for line in result.stdout.splitlines() if line.startswith("BUILT "))
    wheel_name, editable_name = built_line.split()[1:]
    return {"source": source, "tmp": tmp, "packages": packages, "wheel": out / wheel_name,
            "editable": out / editable_name}


def _packages_in(tree: pathlib.Path) -> set[str]:
    """The fireflyfs packages a tree holds: folders with an __init__.py, tests excluded."""
    return {"fireflyfs." + ".".join(init.parent.relative_to(tree).parts) for init in tree.rglob("__init__.py")
            if init.parent.relative_to(tree).parts[0] != "tests"}


def _installed(built: dict, which: str) -> pathlib.Path:
    target = built["tmp"] / f"installed-{which}"
    if not target.exists():
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                                 "--disable-pip-version-check", "--target", str(target), str(built[which])],
                                capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
    return target


def _run_isolated(target: pathlib.Path, code: str) -> str:
    """Run code with target (its .pth files processed) and this venv's dependencies, nothing else."""
    prelude = (f"import site, sys; sys.path[:0] = [{str(target)!r}]; site.addsitedir({str(target)!r}); "
               f"sys.path.append({sysconfig.get_paths()['purelib']!r})\n")
    result = subprocess.run([sys.executable, "-S", "-c", prelude + code], capture_output=True, text=True,
                            timeout=120, cwd=target)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_wheel_holds_every_package_and_no_tests(built):
    names = zipfile.ZipFile(built["wheel"]).namelist()
    packaged = {str(pathlib.PurePosixPath(n).parent).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packaged == built["packages"]
    assert "fireflyfs.client.brand_new" in packaged and "fireflyfs.meta_service.mgmtd" in packaged
    assert (built["source"] / "tests" / "__init__.py").exists()
    assert not [n for n in names if "tests/" in n or n.endswith("setup.py")]
    assert "fireflyfs/proto/meta_pb2.py" in names and "fireflyfs/proto/bulk_wire.py" in names
    entry_points = next(zipfile.ZipFile(built["wheel"]).read(n).decode() for n in names
                        if n.endswith("entry_points.txt"))
    for entry_point in ENTRY_POINTS:
        assert entry_point in entry_points


def test_the_installed_wheel_imports_from_where_it_was_installed(built):
    target = _installed(built, "wheel")
    out = _run_isolated(target, "import fireflyfs.cli.main, fireflyfs.client.fsspec_fs, fireflyfs.client.brand_new as b\n"
                                "print(fireflyfs.cli.main.__file__); print(b.WHERE)")
    first, second = out.split("\n")[:2]
    assert first.startswith(str(target)) and second == "brand new"


def test_the_editable_install_imports_from_the_source_tree(built):
    target = _installed(built, "editable")
    source = built["source"]
    out = _run_isolated(target, "import fireflyfs.cli.main, fireflyfs.client.brand_new as b\n"
                                "print(fireflyfs.cli.main.__file__); print(b.__file__)")
    first, second = out.split("\n")[:2]
    assert first == str(source / "cli" / "main.py")
    assert second == str(source / "client" / "brand_new" / "__init__.py")
