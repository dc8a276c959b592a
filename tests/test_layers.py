"""Layers point one way: every import in the source tree goes to its own layer or a lower one.

Bottom to top (docs/architecture.md draws it):

    5  cli, deploy, bench          the ffs command, the cluster launcher, benchmarks
    4  loaders, fabric             PyTorch datasets and checkpoints; HFReduce
    3  meta_service, storage_service, client
    2  the pure protocol cores     CRAQ, target states, layout: no gRPC, no I/O, no clock
    1  proto                       .proto contracts, generated modules, the bulk wire format
    0  common                      errors, limits, paths, layout math, traffic classes, gRPC plumbing

Method: parse every module of every package (imports inside functions count: a lazy
import is still a dependency) and resolve each import to the package and module it names.
A module may import its own package, a lower layer, and the few same-layer edges listed in
``SAME_LAYER_EDGES`` with the reason for each. The cores may import only common, proto's
message modules and each other, and none of the modules that do I/O or read the clock.
Two runtime checks back the static walk: importing a core loads no grpc, and importing the
client library loads neither the CLI, nor the launcher, nor the benchmarks. The last tests
copy the tree, add one forbidden import, and show the walk reports exactly it.
"""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

LAYER_OF_PACKAGE = {
    "common": 0, "proto": 1,
    "meta_service": 3, "storage_service": 3, "client": 3,
    "loaders": 4, "fabric": 4,
    "cli": 5, "deploy": 5, "bench": 5,
}
CORE_LAYER = 2
CORES = frozenset({
    "fireflyfs.storage_service.craq",
    "fireflyfs.meta_service.mgmtd.target_states",
    "fireflyfs.common.layout",
})
# Same-layer imports between packages, each for a reason.
SAME_LAYER_EDGES = {
    ("meta_service", "client"): "meta truncates, removes and measures chunks through the storage client, "
                                "as 3FS's meta uses its storage client",
    ("cli", "deploy"): "ffs cluster and ffs testbed run the launcher",
    ("cli", "bench"): "ffs bench runs the benchmarks",
    ("bench", "deploy"): "benchmarks start their own local cluster",
}
# What a core may not import: transports, storage, processes, threads, the clock, randomness.
CORE_FORBIDDEN_TOP_LEVEL = frozenset({
    "grpc", "lmdb", "socket", "selectors", "select", "asyncio", "uvloop", "subprocess", "threading",
    "multiprocessing", "os", "io", "mmap", "shutil", "pathlib", "time", "random", "fsspec", "pyarrow",
})


def module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["fireflyfs", *parts])


def source_modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every module of every package under root, by its fireflyfs. name."""
    modules = {}
    for package in LAYER_OF_PACKAGE:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(root, path)] = path
    return modules


def imports_of(name: str, path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the module, relative ones resolved."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # `from pkg import mod` imports pkg.mod when that is a module
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            found.append((node.lineno, target))
    return found


def layer_of(module: str) -> tuple[str, int] | None:
    """(package, layer) of a fireflyfs module; None for anything outside the source packages."""
    parts = module.split(".")
    if parts[0] != "fireflyfs" or len(parts) < 2 or parts[1] not in LAYER_OF_PACKAGE:
        return None
    return parts[1], LAYER_OF_PACKAGE[parts[1]]


def core_of(module: str) -> str | None:
    """The core module `module` is or is inside of (a name imported from a core), else None."""
    return next((core for core in CORES if module == core or module.startswith(core + ".")), None)


def violations(root: pathlib.Path) -> list[str]:
    """Every import that points the wrong way, as 'path:line: importer -> imported (why)'."""
    modules = source_modules(root)
    problems = []
    for name, path in modules.items():
        importer = layer_of(name)
        for line, imported in imports_of(name, path):
            where = f"{path.relative_to(root)}:{line}: {name} -> {imported}"
            if name in CORES:
                problem = _core_problem(imported, modules)
            else:
                problem = _layer_problem(importer, imported, modules)
            if problem:
                problems.append(f"{where} ({problem})")
    return sorted(set(problems))


def _core_problem(imported: str, modules: dict[str, pathlib.Path]) -> str | None:
    if imported.split(".")[0] in CORE_FORBIDDEN_TOP_LEVEL:
        return "a pure core does no I/O and takes time and randomness as parameters"
    if layer_of(imported) is None or core_of(imported):
        return None
    if imported not in modules and imported.rpartition(".")[0] in modules:
        imported = imported.rpartition(".")[0]        # a name from a module
    package, layer = layer_of(imported)
    if package == "proto" and imported.endswith("_pb2_grpc"):
        return "a pure core imports no gRPC"
    if imported == "fireflyfs.common.rpc":
        return "a pure core imports no gRPC"
    if layer >= CORE_LAYER:
        return f"a pure core imports only common, proto and other cores, not {package}"
    return None


def _layer_problem(importer: tuple[str, int], imported: str, modules: dict[str, pathlib.Path]) -> str | None:
    target = layer_of(imported)
    if target is None or core_of(imported):
        return None                                   # outside the tree, or a core: below every service
    (package, layer), (target_package, target_layer) = importer, target
    if target_package == package or target_layer < layer:
        return None
    if target_layer == layer and (package, target_package) in SAME_LAYER_EDGES:
        return None
    if target_layer == layer:
        return f"{package} and {target_package} share layer {layer} and no edge between them is allowed"
    return f"{package} (layer {layer}) must not import {target_package} (layer {target_layer})"


def test_every_import_points_down():
    problems = violations(ROOT)
    assert problems == [], "imports against the layers:\n" + "\n".join(problems)


def test_every_source_package_has_a_layer():
    folders = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert folders == set(LAYER_OF_PACKAGE), "a new top-level package needs its layer here"
    for core in CORES:
        assert core in source_modules(ROOT), f"{core} is listed as a core but does not exist"


def _loaded_after(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_importing_a_core_loads_no_grpc_and_no_storage_engine():
    for core in sorted(CORES):
        loaded = _loaded_after(f"import {core}")
        assert core in loaded
        assert not {"grpc", "lmdb", "fireflyfs.common.rpc"} & loaded, core


def test_the_client_library_loads_no_cli_launcher_or_benchmark():
    loaded = _loaded_after("import fireflyfs.client as c\nc.FfsClient, c.FireflyFileSystem, c.FireflyFile\n"
                           "import fsspec; fsspec.filesystem('ffs', host='127.0.0.1', port=1)")
    assert "fireflyfs.client.fsspec_fs" in loaded
    above = sorted(m for m in loaded if m.split(".")[:2] in (["fireflyfs", "cli"], ["fireflyfs", "deploy"],
                                                              ["fireflyfs", "bench"], ["fireflyfs", "storage_service"],
                                                              ["fireflyfs", "meta_service"]))
    assert above == []


def _tree_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    copy = tmp_path / "tree"
    for package in LAYER_OF_PACKAGE:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def _add_line(path: pathlib.Path, line: str) -> int:
    """Append line inside a function at the end of the file (a lazy import); return its line number."""
    text = path.read_text()
    if not text.endswith("\n"):
        text += "\n"
    text += f"\n\ndef _injected():\n    {line}\n"
    path.write_text(text)
    return text.count("\n")


def test_the_walk_reports_an_added_upward_import(tmp_path):
    copy = _tree_copy(tmp_path)
    assert violations(copy) == []
    line = _add_line(copy / "client" / "client.py", "from fireflyfs.cli import main")
    assert violations(copy) == [
        f"client/client.py:{line}: fireflyfs.client.client -> fireflyfs.cli "
        "(client (layer 3) must not import cli (layer 5))",
        f"client/client.py:{line}: fireflyfs.client.client -> fireflyfs.cli.main "
        "(client (layer 3) must not import cli (layer 5))",
    ]


def test_the_walk_reports_a_sideways_import_and_grpc_in_a_core(tmp_path):
    copy = _tree_copy(tmp_path)
    line = _add_line(copy / "client" / "bulk_client.py", "import fireflyfs.storage_service.bulk_server")
    core_line = _add_line(copy / "storage_service" / "craq.py", "import grpc")
    assert violations(copy) == [
        f"client/bulk_client.py:{line}: fireflyfs.client.bulk_client -> fireflyfs.storage_service.bulk_server "
        "(client and storage_service share layer 3 and no edge between them is allowed)",
        f"storage_service/craq.py:{core_line}: fireflyfs.storage_service.craq -> grpc "
        "(a pure core does no I/O and takes time and randomness as parameters)",
    ]
