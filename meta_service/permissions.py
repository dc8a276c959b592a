"""POSIX permission checks for the caller of a metadata operation.

The rules are the kernel's (path_resolution(7), access(2)): the owner class
if the caller's uid owns the inode, else the group class if the inode's gid is
one of the caller's groups, else other; only that one class counts. Admins and
the cluster's own nodes bypass the bits, as root does (but execute on a file
still needs some x bit, as for root).
"""

from __future__ import annotations

from fireflyfs.common.auth import Principal
from fireflyfs.proto import types_pb2

READ, WRITE, SEARCH = 4, 2, 1      # SEARCH is the x bit: execute on a file, search on a directory


def may_access(principal: Principal, inode: types_pb2.Inode, want: int) -> bool:
    """Whether principal may access inode for want (a mask of READ, WRITE, SEARCH)."""
    mode = inode.mode
    if principal.superuser:
        if want & SEARCH and inode.type != types_pb2.INODE_DIRECTORY and not mode & 0o111:
            return False
        return True
    if principal.uid == inode.uid:
        granted = (mode >> 6) & 7
    elif inode.gid in principal.gids:
        granted = (mode >> 3) & 7
    else:
        granted = mode & 7
    return want & granted == want
