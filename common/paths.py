"""Canonical paths: the one form every service and the client agree on.

A canonical path is absolute, uses "/" as separator, has no empty, "." or ".."
components and no trailing slash; the root is "/". ``..`` is resolved
lexically (symlinks are resolved by the metadata service, not here), and a
``..`` that would climb above the root is an error rather than being clamped,
so a typo never silently lands in a different directory.
"""

from __future__ import annotations

from . import limits
from .errors import InvalidPath

ROOT = "/"


def canonical_path(path: str) -> str:
    """Validate path and return its canonical form; raise InvalidPath when it has none."""
    return "/" + "/".join(path_components(path))


def path_components(path: str) -> list[str]:
    """The validated components of path, root first; [] for the root."""
    if not isinstance(path, str):
        raise InvalidPath(f"path must be a str, not {type(path).__name__}")
    if "\x00" in path:
        raise InvalidPath(f"path contains a NUL byte: {path!r}")
    if len(path.encode("utf-8", "surrogatepass")) > limits.path_bytes_max:
        raise InvalidPath(f"path longer than {limits.path_bytes_max} bytes")
    if not path.startswith("/"):
        path = "/" + path
    body = path[1:]
    if body.endswith("/"):
        body = body[:-1]
    components: list[str] = []
    if not body:
        return components
    for part in body.split("/"):
        if part == "":
            raise InvalidPath(f"path has an empty component: {path!r}")
        if part == ".":
            continue
        if part == "..":
            if not components:
                raise InvalidPath(f"'..' escapes the root: {path!r}")
            components.pop()
            continue
        check_name(part)
        components.append(part)
    if len(components) > limits.path_depth_max:
        raise InvalidPath(f"path deeper than {limits.path_depth_max} directories")
    return components


def check_name(name: str) -> str:
    """Validate one directory entry name and return it."""
    if not name or name in (".", ".."):
        raise InvalidPath(f"invalid name {name!r}")
    if "/" in name or "\x00" in name:
        raise InvalidPath(f"name contains '/' or NUL: {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > limits.name_bytes_max:
        raise InvalidPath(f"name longer than {limits.name_bytes_max} bytes: {name[:32]!r}...")
    return name


def split_parent(path: str) -> tuple[str, str]:
    """(canonical parent, name) of a non-root path."""
    components = path_components(path)
    if not components:
        raise InvalidPath("the root has no parent")
    return "/" + "/".join(components[:-1]), components[-1]


def join(parent: str, name: str) -> str:
    """Join a canonical parent path and a validated name."""
    return parent.rstrip("/") + "/" + name if parent != ROOT else "/" + name


def is_ancestor(ancestor: str, path: str) -> bool:
    """True when ancestor is path or one of its ancestors (both canonical)."""
    return ancestor == ROOT or path == ancestor or path.startswith(ancestor + "/")
