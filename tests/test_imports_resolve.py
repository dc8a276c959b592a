"""Every fireflyfs import names a module or a name that exists, lazy ones included.

Why: many imports sit inside functions (to keep ``ffs --help`` and DataLoader workers
cheap, or in benchmark and fault-test paths that run rarely), so a module moved or a
name renamed breaks them only when that path runs. Method: parse every module of the
source packages, the tests and the benchmark scripts; resolve each ``fireflyfs.``
import against the tree: the module must exist, and a name imported from it must be a
submodule or be bound at the module's top level.
"""

from __future__ import annotations

import ast
import pathlib

from tests.test_layers import LAYER_OF_PACKAGE, ROOT, module_name, source_modules


def top_level_names(path: pathlib.Path) -> set[str]:
    names = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    # a package's lazy names (PEP 562 __getattr__ with an __all__)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            names.update(ast.literal_eval(node.value))
    return names


def unresolved(files: list[pathlib.Path], modules: dict[str, pathlib.Path]) -> list[str]:
    names_cache: dict[str, set[str]] = {}
    problems = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                wanted = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module, name in wanted:
                if not module.startswith("fireflyfs."):
                    continue
                where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{node.lineno}"
                if module not in modules:
                    problems.append(f"{where}: no module {module}")
                elif name is not None and f"{module}.{name}" not in modules:
                    names = names_cache.setdefault(module, top_level_names(modules[module]))
                    if name not in names:
                        problems.append(f"{where}: {module} has no {name}")
    return problems


def test_every_fireflyfs_import_resolves():
    modules = source_modules(ROOT)
    files = sorted(modules.values()) + sorted((ROOT / "tests").rglob("*.py"))
    assert len(files) > 200
    problems = unresolved(files, modules)
    assert problems == [], "\n".join(problems)


def test_a_stale_import_is_reported(tmp_path):
    modules = source_modules(ROOT)
    stale = tmp_path / "stale.py"
    stale.write_text("def later():\n    from fireflyfs.client.fsck import Kind\n"
                     "    from fireflyfs.common.errors import rpc_errors_mapped\n"
                     "    from fireflyfs.common.errors import NotFound\n")
    assert unresolved([stale], modules) == [
        "stale.py:2: no module fireflyfs.client.fsck",
        "stale.py:3: fireflyfs.common.errors has no rpc_errors_mapped",
    ]


def test_module_names_follow_the_folders():
    assert module_name(ROOT, ROOT / "client" / "__init__.py") == "fireflyfs.client"
    assert module_name(ROOT, ROOT / "meta_service" / "mgmtd" / "cluster.py") == "fireflyfs.meta_service.mgmtd.cluster"
    assert set(LAYER_OF_PACKAGE) <= {name.split(".")[1] for name in source_modules(ROOT)}
