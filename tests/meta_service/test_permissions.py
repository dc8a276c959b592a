"""POSIX permissions in meta (meta_service/permissions.py), driven through Namespace as each caller.

The table test runs the same cases on this machine's file system as the same uids (we are root:
a forked child takes each caller's uid and groups) and asserts meta decides as the kernel does.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import threading

import pytest

from fireflyfs.common import auth
from fireflyfs.common.auth import Principal
from fireflyfs.common.errors import PermissionDenied

OWNER = Principal(name="owner", uid=2001, gids=(3001,))
MEMBER = Principal(name="member", uid=2002, gids=(3002, 3001))    # in the owner's group
OTHER = Principal(name="other", uid=2003, gids=(3003,))
ADMIN = Principal(name="admin", uid=0, gids=(0,), admin=True)
NOW = 10**18


def as_(principal):
    return auth.acting_as(principal)


def make_tree(ns, path: str, mode: int, owner: Principal = OWNER, directory: bool = False) -> None:
    """As the superuser: path (file or dir) with mode, owned by owner; parents 0777."""
    parent = path.rsplit("/", 1)[0] or "/"
    if parent != "/":
        ns.mkdirs(parent, NOW, mode=0o777, parents=True, exist_ok=True)
        ns.setattr(parent, NOW, mode=0o777)
    if directory:
        ns.mkdirs(path, NOW, mode=mode)
        ns.create(path + "/child", NOW, mode=0o644)
    else:
        ns.create(path, NOW, mode=mode)
    ns.setattr(path, NOW, mode=mode, uid=owner.uid, gid=owner.gid)


def test_new_inodes_belong_to_their_creator_and_setgid_dirs_pass_their_group(ns):
    ns.mkdirs("/home", NOW, mode=0o777)
    with as_(OWNER):
        inode, _, _ = ns.create("/home/a.txt", NOW, mode=0o640)
        assert (inode.uid, inode.gid, inode.mode) == (2001, 3001, 0o640)
        shared, _ = ns.mkdirs("/home/shared", NOW, mode=0o2775)
    with as_(MEMBER):
        made, _, _ = ns.create("/home/shared/m.txt", NOW, mode=0o644)
        sub, _ = ns.mkdirs("/home/shared/sub", NOW, mode=0o755)
    assert made.gid == shared.gid == 3001 and made.uid == 2002       # the directory's group
    assert sub.gid == 3001 and sub.mode & 0o2000                     # and its set-group-id bit
    root, _ = ns.stat("/")
    assert (root.uid, root.gid, root.mode) == (0, 0, 0o755)


def test_a_private_directory_is_closed_to_others(ns):
    ns.mkdirs("/t", NOW, mode=0o777)
    with as_(OWNER):
        ns.mkdirs("/t/a", NOW, mode=0o700)
        ns.create("/t/a/secret", NOW, mode=0o600)
        ns.mkdirs("/t/a/sub", NOW, mode=0o755)
    attempts = {
        "stat": lambda: ns.stat("/t/a/secret"),
        "list": lambda: ns.list("/t/a"),
        "open": lambda: ns.open("/t/a/secret", NOW),
        "open for write": lambda: ns.open("/t/a/secret", NOW, write=True, client_id="c"),
        "create inside": lambda: ns.create("/t/a/new", NOW),
        "mkdir inside": lambda: ns.mkdirs("/t/a/newdir", NOW),
        "remove": lambda: ns.remove("/t/a/secret", NOW),
        "remove the dir": lambda: ns.remove("/t/a", NOW, recursive=True),
        "rename out": lambda: ns.rename("/t/a/secret", "/t/stolen", NOW),
        "rename in": lambda: ns.rename("/t/mine", "/t/a/planted", NOW),
        "link to": lambda: ns.hardlink("/t/a/secret", "/t/link", NOW),
        "truncate": lambda: ns.truncate("/t/a/secret", 0, NOW),
        "chmod": lambda: ns.setattr("/t/a", NOW, mode=0o777),
        "copy": lambda: ns.copy_file("/t/a/secret", "/t/copy", NOW),
        "symlink inside": lambda: ns.symlink("/t/a/ln", "/etc", NOW),
        "find": lambda: ns.find("/t/a"),
        "batch stat for reading": lambda: ns.batch_stat(["/t/a/secret"], inline_ok=True),
        "by inode id": lambda: ns.stat_inodes([2, 3, 4]),
    }
    with as_(OTHER):
        ns.create("/t/mine", NOW)
        for what, attempt in attempts.items():
            try:
                result = attempt()
            except PermissionDenied as exc:
                assert "other" in str(exc), (what, str(exc))
                continue
            if what == "batch stat for reading":
                assert result[0][0].error == "PermissionDenied", result
                continue
            pytest.fail(f"{what} as another user succeeded: {result}")
        found, _ = ns.find("/t", withdirs=True)
        assert {f.path for f in found} == {"/t/a", "/t/mine"}, "find lists /t/a but does not enter it"
    with as_(OWNER):
        assert [e.name for e in ns.list("/t/a")[0]] == ["secret", "sub"]


def test_the_sticky_bit_keeps_others_files(ns):
    ns.mkdirs("/tmp", NOW, mode=0o1777)
    with as_(OWNER):
        ns.create("/tmp/owners", NOW, mode=0o666)
    with as_(OTHER):
        ns.create("/tmp/others", NOW, mode=0o666)
        with pytest.raises(PermissionDenied, match="sticky"):
            ns.remove("/tmp/owners", NOW)
        with pytest.raises(PermissionDenied, match="sticky"):
            ns.rename("/tmp/owners", "/tmp/mine", NOW)
        with pytest.raises(PermissionDenied, match="sticky"):
            ns.rename("/tmp/others", "/tmp/owners", NOW)     # replacing another's file
        ns.remove("/tmp/others", NOW)                         # its own: fine
    ns.remove("/tmp/owners", NOW)                             # the superuser: fine


def test_chmod_chown_and_times(ns):
    ns.mkdirs("/c", NOW, mode=0o777)
    with as_(OWNER):
        ns.create("/c/f", NOW, mode=0o644)
        assert ns.setattr("/c/f", NOW, mode=0o600)[0].mode == 0o600
        assert ns.setattr("/c/f", NOW, gid=3001)[0].gid == 3001          # to one of its groups
        with pytest.raises(PermissionDenied, match="not in that group"):
            ns.setattr("/c/f", NOW, gid=3003)
        with pytest.raises(PermissionDenied, match="only an admin"):
            ns.setattr("/c/f", NOW, uid=2003)
        assert ns.setattr("/c/f", NOW, mode=0o2644)[0].mode == 0o2644    # its own group: kept
        ns.setattr("/c/f", NOW, mode=0o666)
    with as_(MEMBER):
        with pytest.raises(PermissionDenied, match="does not own"):
            ns.setattr("/c/f", NOW, mode=0o777)
        assert ns.setattr("/c/f", NOW, mtime_ns=5)[0].mtime_ns == 5       # may write it: may touch it
    with as_(OWNER):
        ns.setattr("/c/f", NOW, mode=0o600)
    with as_(OTHER):
        with pytest.raises(PermissionDenied):
            ns.setattr("/c/f", NOW, mtime_ns=6)
    with as_(ADMIN):
        assert ns.setattr("/c/f", NOW, uid=2003, gid=3003)[0].uid == 2003


def test_hard_links_to_others_files_need_read_and_write(ns):
    ns.mkdirs("/h", NOW, mode=0o777)
    with as_(OWNER):
        ns.create("/h/readonly", NOW, mode=0o644)
    with as_(OTHER):
        with pytest.raises(PermissionDenied, match="linking to"):
            ns.hardlink("/h/readonly", "/h/keep", NOW)


def test_mutations_run_as_their_caller_on_every_thread(store):
    """The checks read the caller where they run: mutate must run on the calling thread (both
    engines, group commit included); if it ever ran elsewhere, checks would see the superuser."""
    wrong = []

    def worker(i: int) -> None:
        principal = Principal(name=f"u{i}", uid=5000 + i, gids=(5000 + i,))
        with auth.acting_as(principal):
            for j in range(20):
                def mutate(txn, j=j):
                    if auth.caller() is not principal:
                        wrong.append(i)
                    txn.set_counter(f"t{i}", j)
                store.transact(mutate)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


# ---- the table: meta decides as the kernel does ----------------------------------------------

MODES = [0, 0o777] + [bit << shift for shift in (6, 3, 0) for bit in (4, 2, 1)]
CALLERS = {"owner": OWNER, "member": MEMBER, "other": OTHER}
OPERATIONS = {"file": ["read", "write"], "dir": ["list", "create", "search"]}
CASES = [(kind, op, mode) for kind, ops in OPERATIONS.items() for op in ops for mode in MODES]


def kernel_decisions(base: str, caller: Principal) -> dict[str, bool]:
    """In a forked child as caller: which cases the kernel allows."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:       # the child: become the caller, try every case, report, exit
        try:
            os.close(read_fd)
            os.setgroups(list(caller.gids))
            os.setgid(caller.gids[0])
            os.setuid(caller.uid)
            results = {}
            for index, (kind, op, mode) in enumerate(CASES):
                path = f"{base}/case{index}/target"
                try:
                    if op == "read":
                        open(path, "rb").close()
                    elif op == "write":
                        os.close(os.open(path, os.O_WRONLY))
                    elif op == "list":
                        os.listdir(path)
                    elif op == "create":
                        open(f"{path}/new-{caller.name}", "xb").close()
                    else:
                        os.stat(f"{path}/child")
                    results[str(index)] = True
                except PermissionError:
                    results[str(index)] = False
            os.write(write_fd, json.dumps(results).encode())
        except BaseException as exc:        # reported to the parent, which fails on the empty reply
            os.write(2, f"kernel_decisions child: {exc!r}\n".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        raw = pipe.read()
    os.waitpid(pid, 0)
    return {int(k): v for k, v in json.loads(raw).items()}


def meta_decision(ns, kind: str, op: str, path: str, caller: Principal) -> bool:
    with as_(caller):
        try:
            if op == "read":
                ns.open(path, NOW)
            elif op == "write":
                ns.open(path, NOW, write=True, client_id=f"c-{caller.name}")
            elif op == "list":
                ns.list(path)
            elif op == "create":
                ns.create(f"{path}/new-{caller.name}", NOW, exclusive=True)
            else:
                ns.stat(f"{path}/child")
            return True
        except PermissionDenied:
            return False


@pytest.mark.skipif(os.geteuid() != 0, reason="taking other uids needs root")
def test_posix_table_matches_the_kernel(ns):
    # Not under pytest's tmp_path: its ancestors are 0700, which the callers could not search.
    base = pathlib.Path(tempfile.mkdtemp(prefix="ffs-posix-"))
    os.chmod(base, 0o755)
    try:
        check_table(ns, base)
    finally:
        shutil.rmtree(base)


def check_table(ns, base: pathlib.Path) -> None:
    for index, (kind, op, mode) in enumerate(CASES):
        case = base / f"case{index}"
        case.mkdir(mode=0o777)
        os.chmod(case, 0o777)
        target = case / "target"
        if kind == "dir":
            target.mkdir()
            (target / "child").write_bytes(b"")
        else:
            target.write_bytes(b"x")
        os.chown(target, OWNER.uid, OWNER.gid)
        os.chmod(target, mode)
        make_tree(ns, f"/case{index}/target", mode, directory=kind == "dir")
    mismatches = []
    allowed = {}
    for name, caller in CALLERS.items():
        kernel = allowed[name] = kernel_decisions(str(base), caller)
        assert len(kernel) == len(CASES), "the child reported every case"
        for index, (kind, op, mode) in enumerate(CASES):
            ours = meta_decision(ns, kind, op, f"/case{index}/target", caller)
            if ours != kernel[index]:
                mismatches.append((name, kind, op, oct(mode), "meta", ours, "kernel", kernel[index]))
    assert not mismatches, mismatches
    for name, kernel in allowed.items():      # each caller was allowed some cases and refused others
        assert any(kernel.values()) and not all(kernel.values()), name
