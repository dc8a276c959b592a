"""Canonical paths: every valid spelling maps to one form, every invalid one is refused."""

from __future__ import annotations

import pytest

from fireflyfs.common import limits
from fireflyfs.common.errors import InvalidArgument, InvalidPath
from fireflyfs.common.paths import (ROOT, canonical_path, check_name, is_ancestor, join,
                                    path_components, split_parent)


@pytest.mark.parametrize("path, canonical", [
    ("/", "/"), ("//", "/"), ("", "/"), (".", "/"), ("/.", "/"), ("/./", "/"),
    ("/a", "/a"), ("a", "/a"), ("/a/", "/a"), ("a/b/c", "/a/b/c"),
    ("/a/./b", "/a/b"), ("/a/b/..", "/a"), ("/a/b/../c", "/a/c"), ("/a/..", "/"),
    ("/a/b/../../c/./d/", "/c/d"), ("/ü/日本", "/ü/日本"), ("/a b/c", "/a b/c"),
    ("/...", "/..."), ("/.hidden", "/.hidden"),
])
def test_canonical_forms(path, canonical):
    assert canonical_path(path) == canonical
    assert canonical_path(canonical) == canonical   # idempotent


@pytest.mark.parametrize("path", [
    "/a//b", "a//", "///", "/..", "..", "/a/../..", "/a/\x00b", "\x00",
    "/" + "x" * (limits.name_bytes_max + 1),
    "/" + "/".join(["d"] * (limits.path_depth_max + 1)),
    "/" + "/".join(["y" * 200] * 21),   # > path_bytes_max in total
])
def test_invalid_paths(path):
    with pytest.raises(InvalidPath):
        canonical_path(path)


@pytest.mark.parametrize("not_a_str", [None, b"/a", 3, ["a"]])
def test_non_str_rejected(not_a_str):
    with pytest.raises(InvalidPath):
        canonical_path(not_a_str)


def test_limits_are_inclusive():
    assert canonical_path("/" + "n" * limits.name_bytes_max).count("n") == limits.name_bytes_max
    deep = "/" + "/".join(["d"] * limits.path_depth_max)
    assert len(path_components(deep)) == limits.path_depth_max
    # Names are measured in UTF-8 bytes, not characters.
    with pytest.raises(InvalidPath):
        check_name("é" * (limits.name_bytes_max // 2 + 1))


def test_invalid_path_is_an_invalid_argument_and_value_error():
    with pytest.raises(InvalidArgument):
        canonical_path("/..")
    with pytest.raises(ValueError):
        canonical_path("/..")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\x00", "z" * (limits.name_bytes_max + 1)])
def test_check_name_rejects(name):
    with pytest.raises(InvalidPath):
        check_name(name)


def test_check_name_accepts():
    assert check_name("file.txt") == "file.txt"
    assert check_name("...") == "..."


def test_components_split_and_join():
    assert path_components("/") == []
    assert path_components("/a/b/") == ["a", "b"]
    assert split_parent("/a/b/c") == ("/a/b", "c")
    assert split_parent("/a") == ("/", "a")
    assert split_parent("a/./b/") == ("/a", "b")
    with pytest.raises(InvalidPath):
        split_parent("/")
    assert join(ROOT, "a") == "/a"
    assert join("/a/b", "c") == "/a/b/c"
    for path in ("/a", "/a/b/c", "/x/y"):
        parent, name = split_parent(path)
        assert join(parent, name) == path


def test_is_ancestor():
    assert is_ancestor("/", "/")
    assert is_ancestor("/", "/a/b")
    assert is_ancestor("/a", "/a")
    assert is_ancestor("/a", "/a/b")
    assert not is_ancestor("/a", "/ab")
    assert not is_ancestor("/a/b", "/a")
