"""POSIX permission checks for the caller of a metadata operation.

The rules are the kernel's (path_resolution(7), access(2), unlink(2),
rename(2), chmod(2), chown(2)): the owner class if the caller's uid owns the
inode, else the group class if the inode's gid is one of the caller's groups,
else other; only that one class counts. Admins and the cluster's own nodes
bypass the bits, as root does (but execute on a file still needs some x bit,
as for root). Every refusal names the operation, the path, the caller and the
missing permission.

Code that serves an RPC runs as its caller (``auth.caller()``): mutate
functions run on the caller's thread on both engines (a test holds that), so
the checks read the caller where they are made.
"""

from __future__ import annotations

from fireflyfs.common import auth
from fireflyfs.common.auth import Principal
from fireflyfs.common.errors import PermissionDenied
from fireflyfs.proto import types_pb2

READ, WRITE, SEARCH = 4, 2, 1      # SEARCH is the x bit: execute on a file, search on a directory
S_ISGID, S_ISVTX = 0o2000, 0o1000
_DIRECTORY = types_pb2.INODE_DIRECTORY


def may_access(principal: Principal, inode: types_pb2.Inode, want: int) -> bool:
    """Whether principal may access inode for want (a mask of READ, WRITE, SEARCH)."""
    mode = inode.mode
    if principal.superuser:
        if want & SEARCH and inode.type != _DIRECTORY and not mode & 0o111:
            return False
        return True
    if principal.uid == inode.uid:
        granted = (mode >> 6) & 7
    elif inode.gid in principal.gids:
        granted = (mode >> 3) & 7
    else:
        granted = mode & 7
    return want & granted == want


def _names(want: int, directory: bool) -> str:
    words = [word for bit, word in ((READ, "read"), (WRITE, "write"),
                                    (SEARCH, "search" if directory else "execute")) if want & bit]
    return "+".join(words)


def require(inode: types_pb2.Inode, want: int, path: str, what: str) -> None:
    """PermissionDenied unless the caller may access inode (at path) for want."""
    principal = auth.caller()
    if not may_access(principal, inode, want):
        kind = "directory" if inode.type == _DIRECTORY else "file"
        raise PermissionDenied(f"{what}: {principal.describe()} lacks {_names(want, inode.type == _DIRECTORY)} "
                               f"permission on {kind} {path}")


def checking() -> bool:
    """Whether the caller's permissions need checking at all (not for admins and nodes)."""
    return not auth.caller().superuser


def require_entry_change(parent: types_pb2.Inode, parent_path: str, child: types_pb2.Inode | None,
                         child_path: str, what: str) -> None:
    """Adding, removing or renaming an entry of parent: write and search on it; in a sticky
    directory, removing or replacing child only by its owner, the directory's owner or a superuser."""
    require(parent, WRITE | SEARCH, parent_path, what)
    principal = auth.caller()
    if (child is not None and parent.mode & S_ISVTX and not principal.superuser
            and principal.uid not in (parent.uid, child.uid)):
        raise PermissionDenied(f"{what}: {parent_path} is sticky and {principal.describe()} owns neither it "
                               f"nor {child_path}")


def require_owner(inode: types_pb2.Inode, path: str, what: str) -> None:
    principal = auth.caller()
    if not (principal.superuser or principal.uid == inode.uid):
        raise PermissionDenied(f"{what}: {principal.describe()} does not own {path} (uid {inode.uid})")


def set_owner(inode: types_pb2.Inode, parent: types_pb2.Inode) -> None:
    """A new inode belongs to the caller, in the caller's primary group, or in parent's group
    when parent has the set-group-id bit (and a new directory inherits that bit), as Linux does."""
    principal = auth.caller()
    inode.uid = principal.uid
    inode.gid = principal.gid
    if parent.mode & S_ISGID:
        inode.gid = parent.gid
        if inode.type == _DIRECTORY:
            inode.mode |= S_ISGID


def checked_mode(inode: types_pb2.Inode, mode: int, path: str) -> int:
    """chmod: by the owner or a superuser; a non-superuser's set-group-id bit on a file whose group
    is not theirs is cleared, as Linux does."""
    require_owner(inode, path, "changing the mode of")
    principal = auth.caller()
    if (not principal.superuser and mode & S_ISGID and inode.type != _DIRECTORY
            and inode.gid not in principal.gids):
        mode &= ~S_ISGID
    return mode


def require_chown(inode: types_pb2.Inode, uid: int | None, gid: int | None, path: str) -> None:
    """chown: a new owner only by a superuser; a new group by a superuser, or by the owner to one
    of the owner's own groups."""
    principal = auth.caller()
    if principal.superuser:
        return
    if uid is not None and uid != inode.uid:
        raise PermissionDenied(f"changing the owner of {path}: only an admin may; {principal.describe()} "
                               "is not one")
    if gid is not None and gid != inode.gid:
        require_owner(inode, path, "changing the group of")
        if gid not in principal.gids:
            raise PermissionDenied(f"changing the group of {path} to {gid}: {principal.describe()} is not "
                                   "in that group")


def require_times(inode: types_pb2.Inode, path: str) -> None:
    """Setting a file's times: its owner, a superuser, or anyone who may write it."""
    principal = auth.caller()
    if principal.superuser or principal.uid == inode.uid:
        return
    require(inode, WRITE, path, "setting the times of")


def require_link_source(inode: types_pb2.Inode, path: str) -> None:
    """A hard link to another user's file needs read and write on it (Linux's protected_hardlinks):
    a link must not keep or expose what its owner could not reach."""
    principal = auth.caller()
    if principal.superuser or principal.uid == inode.uid:
        return
    require(inode, READ | WRITE, path, "linking to")
