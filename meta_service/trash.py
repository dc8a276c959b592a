"""`rm -r` in bounded transactions: a removed tree goes to the trash at once and is emptied in batches.

Removing a tree in one transaction makes that transaction as large as the
tree, and the etcd engine refuses transactions past etcd's --max-txn-ops and
request size (issue 11). So, as 3FS does, ``rm -r`` moves the directory's
entry into a hidden trash directory in one small transaction: the tree is
gone from the namespace at once and its name is free. The GC pass then
empties the trash in transactions of at most ``limits.trash_batch_entries_max``
entries: files and symlinks are unlinked exactly as ``unlink`` does
(release_link: a file's chunks go through the GC queue), and a directory
goes once it is empty. Each step starts again from what is stored, so a
restart mid-way just goes on.

The trash directory has a reserved inode id (TRASH_ID) and no entry in the
namespace: no path reaches it. Its entries are named by the removed
directory's inode id, so two removed trees never collide.
"""

from __future__ import annotations

from fireflyfs.common import limits
from fireflyfs.proto import types_pb2

from .inodes import release_link
from .resolve import DIR, load_inode
from .store import Store, Txn

TRASH_ID = (1 << 63) - 1        # never handed out: inode ids count up from 2


def trash_inode(now_ns: int) -> types_pb2.Inode:
    return types_pb2.Inode(id=TRASH_ID, type=DIR, mode=0o700, nlink=2, parent=TRASH_ID, atime_ns=now_ns,
                           mtime_ns=now_ns, ctime_ns=now_ns, crtime_ns=now_ns)


def move_to_trash(txn: Txn, parent_id: int, name: str, directory: types_pb2.Inode, now_ns: int) -> None:
    """The directory (parent_id, name) leaves the namespace in txn; the GC pass empties it later."""
    txn.delete_dentry(parent_id, name)
    txn.put_dentry(TRASH_ID, str(directory.id), directory.id, DIR)
    directory.parent = TRASH_ID
    directory.ctime_ns = now_ns
    txn.put_inode(directory)


def _empty_some(txn: Txn, now_ns: int) -> int:
    """Remove up to trash_batch_entries_max entries of the first tree in the trash; how many went."""
    top = next(iter(txn.scan_dentries(TRASH_ID)), None)
    if top is None:
        return 0
    budget = limits.trash_batch_entries_max
    removed = 0
    path = [(TRASH_ID, top.name, top.inode_id)]          # (parent id, name in it, directory id) downward
    while removed < budget:
        parent_id, name, dir_id = path[-1]
        files, subdirectory = [], None
        for entry in txn.scan_dentries(dir_id):          # files up to the first subdirectory
            if entry.type == DIR:
                subdirectory = entry
                break
            files.append(entry)
            if len(files) == budget - removed:
                break
        for entry in files:
            txn.delete_dentry(dir_id, entry.name)
            release_link(txn, load_inode(txn, entry.inode_id), now_ns)
            removed += 1
        if files:
            continue
        if subdirectory is not None:
            path.append((dir_id, subdirectory.name, subdirectory.inode_id))
            continue
        txn.delete_dentry(parent_id, name)               # empty: the directory itself goes
        txn.delete_inode(dir_id)
        removed += 1
        path.pop()
        if not path:
            break
    return removed


def empty_trash(store: Store, now_ns: int, transactions_max: int = 8) -> int:
    """Empty the trash in up to transactions_max bounded transactions; entries removed."""
    total = 0
    for _ in range(transactions_max):
        removed = store.transact(lambda txn: _empty_some(txn, now_ns))
        total += removed
        if not removed:
            break
    return total


def trash_entries(txn: Txn) -> int:
    """Removed trees still waiting in the trash (their tops)."""
    return sum(1 for _ in txn.scan_dentries(TRASH_ID))
