"""A whole FireflyFS cluster on one machine, in one directory.

``LocalCluster(DIR)`` runs one metadata process (which also hosts the cluster
manager, mgmtd) and N storage processes, each detached in its own session so
they outlive the process that started them (``ffs cluster up`` returns at once).
Everything the cluster owns lives under DIR::

    DIR/cluster.json        port, node/target counts, replicas, heartbeat timeout, pids
                            (restarts reuse them)
    DIR/run/<role>.pid      one pid file per process (meta, storage-1, ...)
    DIR/logs/<role>.log     stdout+stderr of each process
    DIR/meta/               metadata LMDB
    DIR/storage-<i>/        storage node i and its targets

A pid is only trusted when /proc/<pid>/cmdline names this cluster's data dir,
so a stale pid file left by a crash never makes us signal an unrelated
process that reused the pid. Two clusters in two directories share nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from fireflyfs.common.process_tuning import MALLOC_ENV

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
META = "meta"

# glibc keeps multi-MiB buffers on the heap (common/process_tuning.py says why).
CHILD_ENV = {**MALLOC_ENV, "PYTHONUNBUFFERED": "1"}

startup_timeout_s_default = 60.0
heartbeat_interval_ms_max = 1000         # the storage default; shorter when the timeout is short
stop_timeout_s_default = 10.0
log_tail_lines = 30


class ClusterError(RuntimeError):
    """The local cluster could not be started or stopped as asked."""


def storage_role(node_id: int) -> str:
    return f"storage-{node_id}"


def pick_free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def default_replicas(storage_nodes: int) -> int:
    """As mgmtd's default: 3 replicas with at least 3 storage nodes, else 1."""
    return 3 if storage_nodes >= 3 else 1


def heartbeat_interval_ms_for(heartbeat_timeout_ms: int) -> int:
    """A tenth of the timeout (storage fences itself after half of it: five missed beats)."""
    return max(20, min(heartbeat_interval_ms_max, heartbeat_timeout_ms // 10))


def log_tail(path: pathlib.Path, lines: int = log_tail_lines) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    """Start, stop, inspect and fault-inject a cluster living in base_dir.

    Arguments left as None come from DIR/cluster.json when it exists (so
    ``LocalCluster(DIR).down()`` works without repeating the sizes), else from
    the defaults: 3 storage nodes of 2 targets, a free port, 3 replicas per
    chain with at least 3 storage nodes (else 1), the services' own heartbeat
    timeout. A short ``heartbeat_timeout_ms`` (fault tests: ~2000) goes to the
    meta process (mgmtd marks silent nodes offline after it) and to storage
    (which fences itself after half of it), with heartbeats every tenth of it.
    ``chain_table=False`` leaves the chain table to the operator
    (``ffs admin chain-table create``); up() then only waits for registration.
    ``fsync=False`` starts meta and storage with ``--no-fsync``: faster, and an
    acknowledged write survives a process kill but not a host power loss
    (docs/durability.md); the default (True) is the services' durable default.
    ``extra_env`` reaches every process it starts, which is how the services'
    environment overrides pass through: e.g. ``FFS_TARGET_CAPACITY=8MiB`` and
    ``FFS_TARGET_RESERVE=1MiB`` for a storage cluster that fills quickly,
    ``FFS_META_MAP_SIZE``, ``FFS_TARGET_MAP_SIZE`` (and ``_MAX``) for LMDB maps.
    """

    def __init__(self, base_dir: str | os.PathLike, storage_nodes: int | None = None,
                 targets_per_node: int | None = None, port: int | None = None,
                 replicas: int | None = None, heartbeat_timeout_ms: int | None = None,
                 chain_table: bool = True, python: str = sys.executable,
                 startup_timeout_s: float = startup_timeout_s_default,
                 stop_timeout_s: float = stop_timeout_s_default,
                 extra_env: dict[str, str] | None = None, fsync: bool | None = None) -> None:
        self.base_dir = pathlib.Path(base_dir).resolve()
        saved = self._load_state()
        self.storage_nodes = int(storage_nodes if storage_nodes is not None
                                 else saved.get("storage_nodes", 3))
        self.targets_per_node = int(targets_per_node if targets_per_node is not None
                                    else saved.get("targets_per_node", 2))
        # port 0 / None: reuse the persisted port, else pick one at the first up().
        self.port = int(port or saved.get("port", 0))
        self.replicas = int(replicas or saved.get("replicas") or default_replicas(self.storage_nodes))
        timeout = heartbeat_timeout_ms if heartbeat_timeout_ms is not None else saved.get("heartbeat_timeout_ms")
        self.heartbeat_timeout_ms = int(timeout) if timeout else None
        self.fsync = bool(fsync if fsync is not None else saved.get("fsync", True))
        if self.storage_nodes < 1 or self.targets_per_node < 1:
            raise ValueError("a cluster needs at least one storage node with one target")
        if not 1 <= self.replicas <= self.storage_nodes:
            raise ValueError(f"{self.replicas} replicas need as many storage nodes; "
                             f"the cluster has {self.storage_nodes}")
        if self.heartbeat_timeout_ms is not None and self.heartbeat_timeout_ms < 100:
            raise ValueError(f"heartbeat timeout {self.heartbeat_timeout_ms} ms is below 100 ms")
        if not 0 <= self.port < 65536:
            raise ValueError(f"bad port {self.port}")
        self.python = python
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.extra_env = dict(extra_env or {})
        self.chain_table = chain_table
        self._children: dict[int, subprocess.Popen] = {}   # pid -> Popen, to reap our own children

    # ---- paths and names ------------------------------------------------------------------

    @property
    def state_file(self) -> pathlib.Path:
        return self.base_dir / "cluster.json"

    @property
    def host(self) -> str:
        return HOST

    @property
    def meta_address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"ffs://{self.meta_address}"

    def roles(self) -> list[str]:
        return [META] + [storage_role(i) for i in range(1, self.storage_nodes + 1)]

    def data_dir(self, role: str) -> pathlib.Path:
        return self.base_dir / role

    def pid_file(self, role: str) -> pathlib.Path:
        return self.base_dir / "run" / f"{role}.pid"

    def log_file(self, role: str) -> pathlib.Path:
        return self.base_dir / "logs" / f"{role}.log"

    def command(self, role: str) -> list[str]:
        timeout = self.heartbeat_timeout_ms
        no_fsync = [] if self.fsync else ["--no-fsync"]
        if role == META:
            return [self.python, "-m", "fireflyfs.meta_service",
                    "--data-dir", str(self.data_dir(role)), "--listen", self.meta_address,
                    *(["--heartbeat-timeout-ms", str(timeout)] if timeout else []), *no_fsync]
        node_id = self._node_id(role)
        command = [self.python, "-m", "fireflyfs.storage_service", "--node-id", str(node_id),
                   "--data-dir", str(self.data_dir(role)), "--listen", f"{HOST}:0",
                   "--mgmtd", self.meta_address, "--targets", str(self.targets_per_node), *no_fsync]
        if timeout:
            command += ["--heartbeat-interval-ms", str(heartbeat_interval_ms_for(timeout)),
                        "--heartbeat-timeout-ms", str(timeout)]
        return command

    def _node_id(self, role: str) -> int:
        if not role.startswith("storage-"):
            raise ValueError(f"unknown role {role!r}")
        node_id = int(role.split("-", 1)[1])
        if not 1 <= node_id <= self.storage_nodes:
            raise ValueError(f"no storage node {node_id} in a cluster of {self.storage_nodes}")
        return node_id

    def _role_name(self, role_or_node: str | int) -> str:
        if isinstance(role_or_node, int):
            role = storage_role(role_or_node)
        elif role_or_node.isdigit():
            role = storage_role(int(role_or_node))
        else:
            role = role_or_node
        if role != META:
            self._node_id(role)
        return role

    # ---- state ----------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ClusterError(f"unreadable {self.state_file}: {exc}") from exc

    def _save_state(self) -> None:
        state = {
            "url": self.url,
            "port": self.port,
            "storage_nodes": self.storage_nodes,
            "targets_per_node": self.targets_per_node,
            "replicas": self.replicas,
            "heartbeat_timeout_ms": self.heartbeat_timeout_ms,
            "fsync": self.fsync,
            "pids": {role: self.pid(role) for role in self.roles()},
        }
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def _read_pid_file(self, role: str) -> int | None:
        try:
            return int(self.pid_file(role).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _is_ours(self, pid: int, role: str) -> bool:
        """True when pid is alive (not a zombie) and is this cluster's process for role."""
        self._reap()
        if pid in self._children:
            # Started by this object and not yet exited: ours even while its cmdline is in flux.
            return True
        try:
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return False
        want = str(self.data_dir(role)).encode()
        return any(a == b"--data-dir" and b == want for a, b in zip(cmdline, cmdline[1:]))

    def pid(self, role: str) -> int | None:
        """The pid of role when it runs, else None."""
        pid = self._read_pid_file(role)
        return pid if pid is not None and self._is_ours(pid, role) else None

    def _reap(self) -> None:
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]

    # ---- lifecycle ------------------------------------------------------------------------

    def up(self) -> str:
        """Start whatever is not running, wait until the cluster serves; return its URL."""
        for sub in ("run", "logs"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = pick_free_port()
        self._save_state()
        deadline = time.monotonic() + self.startup_timeout_s
        if self.pid(META) is None:
            self._start(META)
        self._wait_meta(deadline)
        for role in self.roles()[1:]:
            if self.pid(role) is None:
                self._start(role)
        self._save_state()
        self._wait_storage(deadline)
        if self.chain_table:
            self._create_chain_table()
            self.wait_chains(lambda states: "SERVING" in states, self._left(deadline),
                             "a SERVING target in every chain")
        log.info("cluster %s up at %s", self.base_dir, self.url)
        return self.url

    def _start(self, role: str) -> int:
        self.data_dir(role).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(CHILD_ENV)
        env.update(self.extra_env)
        with open(self.log_file(role), "ab") as log_handle:
            log_handle.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                             f"{' '.join(self.command(role))}\n".encode())
            log_handle.flush()
            proc = subprocess.Popen(self.command(role), stdin=subprocess.DEVNULL,
                                    stdout=log_handle, stderr=subprocess.STDOUT, env=env,
                                    cwd=self.base_dir, start_new_session=True, close_fds=True)
        self._children[proc.pid] = proc
        self.pid_file(role).write_text(f"{proc.pid}\n")
        log.info("started %s pid %d", role, proc.pid)
        return proc.pid

    def _check_alive(self, roles: list[str], waiting_for: str) -> None:
        for role in roles:
            if self.pid(role) is None:
                raise ClusterError(
                    f"{role} exited while waiting for {waiting_for}; last lines of "
                    f"{self.log_file(role)}:\n{log_tail(self.log_file(role))}")

    def _timeout(self, waiting_for: str, roles: list[str], detail: str) -> ClusterError:
        tails = "\n".join(f"--- {self.log_file(r)}:\n{log_tail(self.log_file(r))}" for r in roles)
        return ClusterError(f"timed out after {self.startup_timeout_s:.0f}s waiting for "
                            f"{waiting_for} ({detail})\n{tails}")

    def routing(self, timeout_s: float = 2.0):
        """Mgmtd.GetRoutingInfo of the running cluster (a RoutingInfo message)."""
        from fireflyfs.common.rpc import make_channel
        from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

        with make_channel(self.meta_address) as channel:
            stub = mgmtd_pb2_grpc.MgmtdStub(channel)
            return stub.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(), timeout=timeout_s).routing

    def _wait_meta(self, deadline: float) -> None:
        import grpc

        last = "no answer yet"
        while True:
            self._check_alive([META], "the metadata service")
            try:
                self.routing(timeout_s=1.0)
                return
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            if time.monotonic() > deadline:
                raise self._timeout(f"the metadata service at {self.meta_address}", [META], last)
            time.sleep(0.1)

    def _wait_storage(self, deadline: float) -> None:
        """Wait until every storage node we run is registered, connected, and is that process."""
        import grpc
        from fireflyfs.proto import types_pb2

        storage = self.roles()[1:]
        detail = "no routing yet"
        while True:
            self._check_alive(self.roles(), "storage nodes to register")
            try:
                routing = self.routing(timeout_s=1.0)
                nodes = {n.id: n for n in routing.nodes if n.type == types_pb2.NODE_STORAGE}
                missing = []
                for role in storage:
                    node = nodes.get(self._node_id(role))
                    pid = self.pid(role)
                    if (node is None or node.status != types_pb2.HEARTBEAT_CONNECTED
                            or (node.pid and node.pid != pid)):
                        missing.append(role)
                if not missing:
                    return
                detail = f"not yet connected: {', '.join(missing)}"
            except grpc.RpcError as exc:
                detail = f"{exc.code().name}: {exc.details()}"
            if time.monotonic() > deadline:
                raise self._timeout("storage nodes to register", self.roles(), detail)
            time.sleep(0.1)

    def _create_chain_table(self) -> None:
        from fireflyfs.common.rpc import rpc_errors_mapped
        from fireflyfs.common.rpc import make_channel
        from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

        with make_channel(self.meta_address) as channel, rpc_errors_mapped():
            stub = mgmtd_pb2_grpc.MgmtdStub(channel)
            reply = stub.CreateChainTable(
                mgmtd_pb2.CreateChainTableRequest(replicas=self.replicas, only_if_missing=True),
                timeout=10.0)
        if reply.created:
            log.info("created chain table %d with %d chains", reply.table.id, len(reply.table.chains))

    def chain_states(self) -> dict[int, list[tuple[int, str]]]:
        """{chain id: [(target id, public state name), ...] head first} from mgmtd."""
        from fireflyfs.proto import types_pb2

        routing = self.routing()
        states = {t.id: types_pb2.PublicTargetState.Name(t.public_state) for t in routing.targets}
        return {c.id: [(t, states.get(t, "UNKNOWN")) for t in c.targets] for c in routing.chains}

    def wait_chains(self, predicate, timeout_s: float, what: str) -> dict[int, list[tuple[int, str]]]:
        """Poll routing until predicate(list of a chain's state names) holds for every chain."""
        import grpc

        deadline = time.monotonic() + timeout_s
        chains: dict = {}
        while True:
            try:
                chains = self.chain_states()
                if chains and all(predicate([s for _, s in members]) for members in chains.values()):
                    return chains
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout_s:.0f}s waiting for {what}; chains: {chains}")
            time.sleep(0.1)

    def wait_all_serving(self, timeout_s: float = 60.0) -> dict[int, list[tuple[int, str]]]:
        """Until every target of every chain is SERVING (after restarts: resync finished)."""
        return self.wait_chains(lambda states: set(states) == {"SERVING"}, timeout_s, "every target SERVING")

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())

    def down(self) -> list[str]:
        """Stop every process of this cluster: SIGTERM, then SIGKILL after stop_timeout_s.

        Storage nodes go first so they do not spin on an absent manager. Returns
        the roles that were running.
        """
        order = self.roles()[1:] + [META]
        running = [(role, pid) for role in order if (pid := self.pid(role)) is not None]
        for role, pid in running:
            self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for role, pid in running:
            if not self._wait_gone(pid, role, deadline):
                log.warning("%s (pid %d) ignored SIGTERM; sending SIGKILL", role, pid)
                self._signal(pid, signal.SIGKILL)
                self._wait_gone(pid, role, time.monotonic() + self.stop_timeout_s)
        for role in self.roles():
            if self.pid(role) is None:
                with contextlib.suppress(FileNotFoundError):
                    self.pid_file(role).unlink()
        if self.state_file.exists():
            self._save_state()
        return [role for role, _ in running]

    def kill(self, role_or_node: str | int, sig: int = signal.SIGKILL, wait: bool = True) -> int:
        """Send sig to one process ("meta", "storage-2" or 2); return its pid.

        With wait (and a terminating signal) returns once it has exited, so a
        following up() restarts it.
        """
        role = self._role_name(role_or_node)
        pid = self.pid(role)
        if pid is None:
            raise ClusterError(f"{role} is not running")
        self._signal(pid, sig)
        if wait and sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            if not self._wait_gone(pid, role, time.monotonic() + self.stop_timeout_s):
                raise ClusterError(f"{role} (pid {pid}) still running after signal {sig}")
        return pid

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            # Each process leads its own session: signal the group so helpers it forked go too.
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def _wait_gone(self, pid: int, role: str, deadline: float) -> bool:
        while self._is_ours(pid, role):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def status(self) -> list[dict[str, Any]]:
        """One row per process: role, node_id, pid, address, state (running/stopped)."""
        addresses: dict[int, str] = {}
        meta_pid = self.pid(META)
        if meta_pid is not None:
            with contextlib.suppress(Exception):
                from fireflyfs.proto import types_pb2
                for node in self.routing(timeout_s=1.0).nodes:
                    if node.type == types_pb2.NODE_STORAGE:
                        addresses[node.id] = node.address
        rows = [{"role": "meta", "name": META, "node_id": None, "pid": meta_pid,
                 "address": self.meta_address,
                 "state": "running" if meta_pid is not None else "stopped"}]
        for role in self.roles()[1:]:
            node_id = self._node_id(role)
            pid = self.pid(role)
            rows.append({"role": "storage", "name": role, "node_id": node_id, "pid": pid,
                         "address": addresses.get(node_id, "") if pid is not None else "",
                         "state": "running" if pid is not None else "stopped"})
        return rows

    def __enter__(self) -> "LocalCluster":
        self.up()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()
