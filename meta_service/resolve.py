"""Path resolution inside one transaction: components -> inode, following symlinks.

Symlinks in intermediate components are always followed; the last one only
when asked (stat vs lstat). Following restarts the walk from the root with the
target spliced in, at most ``limits.symlink_follow_max`` times. A relative
target is taken from the symlink's directory; ``..`` at the root stays at the
root, as POSIX resolution does.
"""

from __future__ import annotations

from fireflyfs.common import limits
from fireflyfs.common.errors import Internal, InvalidArgument, InvalidPath, NotADirectory, NotFound
from fireflyfs.common.paths import check_name, path_components
from fireflyfs.proto import types_pb2

from . import permissions
from .store import Txn

ROOT_ID = 1
DIR = types_pb2.INODE_DIRECTORY
FILE = types_pb2.INODE_FILE
SYMLINK = types_pb2.INODE_SYMLINK


def as_path(components: list[str]) -> str:
    return "/" + "/".join(components)


def load_inode(txn: Txn, inode_id: int) -> types_pb2.Inode:
    inode = txn.get_inode(inode_id)
    if inode is None:
        raise Internal(f"dentry points at missing inode {inode_id}")
    return inode


def symlink_components(directory: list[str], target: str) -> list[str]:
    """Components of a symlink target seen from the symlink's directory."""
    result = [] if target.startswith("/") else list(directory)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if result:
                result.pop()
            continue
        result.append(check_name(part))
    return result


def walk(txn: Txn, components: list[str], follow_last: bool,
         shown_path: str | None = None) -> tuple[types_pb2.Inode, list[str]]:
    """(inode, canonical components) that components lead to.

    A directory on the way is known by its dentry (which carries the child's
    type), so only the last inode and symlinks are loaded: one read per
    component instead of two (on etcd, each read is a round trip). A caller
    who is not an admin or a node needs search permission on each directory
    walked, so for them each one is loaded too (permissions.py).
    """
    shown = shown_path or as_path(components)
    pending = list(components)
    done: list[str] = []
    current_id, current_type = ROOT_ID, DIR
    follows = 0
    checking = permissions.checking()     # admins and nodes skip the reads of directory inodes
    while pending:
        name = pending.pop(0)
        if current_type != DIR:
            raise NotADirectory(f"{shown}: {as_path(done)} is not a directory")
        if checking:
            permissions.require(load_inode(txn, current_id), permissions.SEARCH, as_path(done), shown)
        entry = txn.get_dentry(current_id, name)
        if entry is None:
            raise NotFound(f"{shown}: no such file or directory")
        if entry.type == SYMLINK and (pending or follow_last):
            child = load_inode(txn, entry.inode_id)
            follows += 1
            if follows > limits.symlink_follow_max:
                raise InvalidArgument(f"{shown}: too many levels of symbolic links")
            pending = symlink_components(done, child.symlink_target) + pending
            if len(pending) > limits.path_depth_max:
                raise InvalidPath(f"{shown}: symlink target too deep")
            done = []
            current_id, current_type = ROOT_ID, DIR
            continue
        done.append(name)
        current_id, current_type = entry.inode_id, entry.type
    return load_inode(txn, current_id), done


def resolve(txn: Txn, path: str, follow_last: bool = True) -> tuple[types_pb2.Inode, list[str]]:
    return walk(txn, path_components(path), follow_last, path)


def resolve_parent(txn: Txn, path: str, what: str = "operate on") -> tuple[types_pb2.Inode, list[str], str]:
    """(parent directory inode, its canonical components, last name) of a non-root path."""
    components = path_components(path)
    if not components:
        raise InvalidPath(f"cannot {what} the root directory")
    parent, parent_components = walk(txn, components[:-1], True, path)
    if parent.type != DIR:
        raise NotADirectory(f"{path}: {as_path(parent_components)} is not a directory")
    return parent, parent_components, components[-1]
