"""A whole FireflyFS cluster on one machine, in one directory.

``LocalCluster(DIR)`` runs one metadata process (which also hosts the cluster
manager, mgmtd) and N storage processes, each detached in its own session so
they outlive the process that started them (``ffs cluster up`` returns at once).
With ``meta_engine="etcd"`` the metadata lives in E etcd members on loopback
ports instead (deploy/etcd_cluster.py builds their command lines) and M
stateless meta servers share it (each also a mgmtd; one of them is primary).
Everything the cluster owns lives under DIR::

    DIR/cluster.json        ports, engine, node/target/member counts, replicas, heartbeat
                            timeout, pids (restarts reuse them)
    DIR/run/<role>.pid      one pid file per process (etcd-0, meta, meta-2, storage-1, ...)
    DIR/logs/<role>.log     stdout+stderr of each process
    DIR/meta/, meta-<j>/    meta server 1 (its LMDB with the lmdb engine), meta server j
    DIR/etcd-<k>/           etcd member k's data (the etcd engine)
    DIR/storage-<i>/        storage node i and its targets

Processes start in the order etcd members, meta servers, storage nodes, and
stop in the reverse order (etcd last, so meta servers stop while their store
still answers).

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
from fireflyfs.meta_service.engines import ENGINES

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
META = "meta"
ETCD = "etcd"
ENGINE_DEFAULT = "lmdb"
# With the etcd engine, unless told otherwise: a cluster that loses any one metadata process
# and keeps serving, as the engine is chosen for.
etcd_members_default = 3
meta_servers_etcd_default = 2
etcd_members_max = 9          # an odd quorum beyond 9 members only slows etcd's writes
meta_servers_max = 16

# glibc keeps multi-MiB buffers on the heap (common/process_tuning.py says why).
# A pre-provisioned admin token for new clusters (LocalCluster(admin_token=...) by default): a
# harness that runs many clusters, such as the test suite, gives them all the one its clients hold.
ADMIN_TOKEN_ENV = "FFS_CLUSTER_ADMIN_TOKEN"
# Likewise a CA for new clusters' certificates (default: each cluster makes its own in DIR/tls).
CA_DIR_ENV = "FFS_CLUSTER_CA_DIR"
CHILD_ENV = {**MALLOC_ENV, "PYTHONUNBUFFERED": "1"}

startup_timeout_s_default = 60.0
heartbeat_interval_ms_max = 1000         # the storage default; shorter when the timeout is short
stop_timeout_s_default = 10.0
log_tail_lines = 30


class ClusterError(RuntimeError):
    """The local cluster could not be started or stopped as asked."""


def storage_role(node_id: int) -> str:
    return f"storage-{node_id}"


def meta_role(index: int) -> str:
    """Meta server 1 is "meta" (as in a one-server cluster, so its data dir stays DIR/meta); then meta-2, ..."""
    return META if index == 1 else f"{META}-{index}"


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

    ``meta_engine``: "lmdb" (the default: one meta server, its LMDB under
    DIR/meta) or "etcd": ``etcd_members`` etcd processes (default 3; fixed once
    the cluster exists, as etcd's membership is) and ``meta_servers`` meta
    servers (default 2; may change between ups) over them. The URL then names
    every meta server (``ffs://h:p1,h:p2``); ``meta_addresses`` lists them and
    ``meta_address`` is the first. Storage nodes get every meta address too.
    """

    def __init__(self, base_dir: str | os.PathLike, storage_nodes: int | None = None,
                 targets_per_node: int | None = None, port: int | None = None,
                 replicas: int | None = None, heartbeat_timeout_ms: int | None = None,
                 chain_table: bool = True, python: str = sys.executable,
                 startup_timeout_s: float = startup_timeout_s_default,
                 stop_timeout_s: float = stop_timeout_s_default,
                 extra_env: dict[str, str] | None = None, fsync: bool | None = None,
                 meta_engine: str | None = None, etcd_members: int | None = None,
                 meta_servers: int | None = None, insecure: bool | None = None,
                 admin_token: str | None = None) -> None:
        self.base_dir = pathlib.Path(base_dir).resolve()
        saved = self._load_state()
        self._init_metadata(saved, meta_engine, etcd_members, meta_servers)
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
        if saved and insecure is not None and bool(insecure) != bool(saved.get("insecure", False)):
            raise ValueError(f"{self.base_dir} holds a cluster made {'with' if saved.get('insecure') else 'without'} "
                             "--insecure; a cluster keeps its security (make a new one)")
        self.insecure = bool(insecure if insecure is not None else saved.get("insecure", False))
        # A pre-provisioned admin token for a new cluster (harnesses that run many clusters give
        # them all one); by default the first meta start makes one in admin_token_file.
        self._admin_token = admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
        if self.storage_nodes < 1 or self.targets_per_node < 1:
            raise ValueError("a cluster needs at least one storage node with one target")
        if not 1 <= self.replicas <= self.storage_nodes:
            raise ValueError(f"{self.replicas} replicas need as many storage nodes; "
                             f"the cluster has {self.storage_nodes}")
        if self.heartbeat_timeout_ms is not None and self.heartbeat_timeout_ms < 100:
            raise ValueError(f"heartbeat timeout {self.heartbeat_timeout_ms} ms is below 100 ms")
        if not 0 <= self.port < 65536:
            raise ValueError(f"bad port {self.port}")
        # Meta server j listens on meta_ports[j-1]; the first is `port`. The list only grows
        # (a port once given stays that server's), so down() finds every server ever started.
        self.meta_ports = [self.port] + [int(p) for p in saved.get("meta_ports", [])[1:]]
        self.meta_ports += [0] * (self.meta_servers - len(self.meta_ports))
        self.python = python
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.extra_env = dict(extra_env or {})
        self.chain_table = chain_table
        self._children: dict[int, subprocess.Popen] = {}   # pid -> Popen, to reap our own children
        self._etcd = None                                   # EtcdCluster, made when first needed

    def _init_metadata(self, saved: dict[str, Any], meta_engine: str | None, etcd_members: int | None,
                       meta_servers: int | None) -> None:
        """The engine, etcd member and meta server counts: arguments, else cluster.json, else defaults."""
        saved_engine = saved.get("meta_engine", ENGINE_DEFAULT if saved else None)   # older files: lmdb
        self.meta_engine = meta_engine or saved_engine or ENGINE_DEFAULT
        if self.meta_engine not in ENGINES:
            raise ValueError(f"unknown metadata engine {self.meta_engine!r}; choose one of {', '.join(ENGINES)}")
        if saved_engine and saved_engine != self.meta_engine:
            raise ValueError(f"{self.base_dir} holds a cluster on the {saved_engine} engine; a cluster keeps "
                             f"its engine (move the metadata with ffs admin meta export/import)")
        if self.meta_engine == ETCD:
            saved_members = saved.get("etcd_members")
            self.etcd_members = int(etcd_members or saved_members or etcd_members_default)
            if saved_members and int(saved_members) != self.etcd_members:
                raise ValueError(f"{self.base_dir} holds a cluster of {saved_members} etcd members; "
                                 f"etcd's membership is fixed when its data is created")
            self.meta_servers = int(meta_servers or saved.get("meta_servers") or meta_servers_etcd_default)
        else:
            if etcd_members:
                raise ValueError("etcd members serve only the etcd engine (--meta-engine etcd)")
            if meta_servers not in (None, 1):
                raise ValueError("several meta servers share one namespace only on the etcd engine "
                                 "(--meta-engine etcd); LMDB lives on one host")
            self.etcd_members, self.meta_servers = 0, 1
        if not 0 <= self.etcd_members <= etcd_members_max:
            raise ValueError(f"{self.etcd_members} etcd members; at most {etcd_members_max}")
        if not 1 <= self.meta_servers <= meta_servers_max:
            raise ValueError(f"{self.meta_servers} meta servers; 1 to {meta_servers_max}")
        self.etcd_ports = {name: (int(ports[0]), int(ports[1]))
                           for name, ports in saved.get("etcd_ports", {}).items()}

    # ---- paths and names ------------------------------------------------------------------

    @property
    def state_file(self) -> pathlib.Path:
        return self.base_dir / "cluster.json"

    @property
    def host(self) -> str:
        return HOST

    @property
    def meta_address(self) -> str:
        """The first meta server's address (the only one with the lmdb engine)."""
        return self.meta_addresses[0]

    @property
    def meta_addresses(self) -> list[str]:
        return [f"{HOST}:{port}" for port in self.meta_ports[:self.meta_servers]]

    @property
    def url(self) -> str:
        return f"ffs://{','.join(self.meta_addresses)}"

    @property
    def etcd(self):
        """The etcd members' command lines and health (deploy/etcd_cluster.EtcdCluster), on the kept ports."""
        if self._etcd is None:
            from fireflyfs.deploy.etcd_cluster import EtcdCluster   # it imports this module

            self._etcd = EtcdCluster(self.base_dir, self.etcd_members, ports=self.etcd_ports)
            self.etcd_ports = self._etcd.ports
        return self._etcd

    @property
    def etcd_endpoints(self) -> list[str]:
        """host:port of every etcd member (none with the lmdb engine)."""
        return self.etcd.endpoints if self.etcd_members else []

    def etcd_roles(self) -> list[str]:
        from fireflyfs.deploy.etcd_cluster import member_name

        return [member_name(i) for i in range(self.etcd_members)]

    def meta_roles(self) -> list[str]:
        return [meta_role(i) for i in range(1, self.meta_servers + 1)]

    def storage_roles(self) -> list[str]:
        return [storage_role(i) for i in range(1, self.storage_nodes + 1)]

    def roles(self) -> list[str]:
        """Every process of the cluster, in start order."""
        return self.etcd_roles() + self.meta_roles() + self.storage_roles()

    def _retired_meta_roles(self) -> list[str]:
        """Meta servers an earlier up() started beyond today's meta_servers."""
        return [meta_role(i) for i in range(self.meta_servers + 1, len(self.meta_ports) + 1)]

    def data_dir(self, role: str) -> pathlib.Path:
        return self.base_dir / role

    def pid_file(self, role: str) -> pathlib.Path:
        return self.base_dir / "run" / f"{role}.pid"

    def log_file(self, role: str) -> pathlib.Path:
        return self.base_dir / "logs" / f"{role}.log"

    @property
    def admin_token_file(self) -> pathlib.Path:
        """The first admin's token (mode 0600), made by the first meta start of a secure cluster."""
        return self.base_dir / "admin.token"

    def admin_token(self) -> str | None:
        """The admin token the launcher's own calls carry (None for an --insecure cluster); they
        trust the cluster's CA (this process's TLS, common/tls.py)."""
        if self.insecure:
            return None
        from fireflyfs.common import tls

        if self.ca_file.exists():
            tls.configure_client_from_env(str(self.ca_file))
        from fireflyfs.common.auth import read_token_file

        if not self.admin_token_file.exists():
            return None          # not yet made: the first meta start writes it
        return read_token_file(str(self.admin_token_file))

    def admin_channel(self, address: str):
        """A channel for this launcher's own calls: the admin's token and the cluster's TLS, or
        plaintext for an --insecure cluster (whatever TLS this process has otherwise)."""
        from fireflyfs.common.rpc import make_channel

        if self.insecure:
            return make_channel(address, credentials=None)
        return make_channel(address, token=self.admin_token())

    def node_key_file(self, role: str) -> pathlib.Path:
        return self.data_dir(role) / "node.key"

    @property
    def tls_dir(self) -> pathlib.Path:
        """Each service's certificate and key, and the CA (ca.pem) clients trust (FFS_TLS_CA)."""
        return self.base_dir / "tls"

    @property
    def ca_file(self) -> pathlib.Path:
        return pathlib.Path(self._ca_dir) / "ca.pem"

    @property
    def _ca_dir(self) -> str:
        return os.environ.get(CA_DIR_ENV) or str(self.tls_dir)

    def role_addresses(self, role: str) -> list[str]:
        """The addresses role's certificate names (clients check the one they dial)."""
        return [HOST, "localhost"]

    def _tls_flags(self, role: str) -> list[str]:
        from fireflyfs.common import tls

        files = tls.issue(self._ca_dir, str(self.tls_dir), role, self.role_addresses(role))
        return ["--tls-cert", files.cert, "--tls-key", files.key, "--tls-ca", files.ca]

    def command(self, role: str) -> list[str]:
        timeout = self.heartbeat_timeout_ms
        no_fsync = [] if self.fsync else ["--no-fsync"]
        security = ["--insecure"] if self.insecure else []
        if role in self.etcd_roles():
            return self.etcd.command(role)
        if role in self.meta_roles():
            address = self.meta_addresses[self.meta_roles().index(role)]
            engine = ([] if self.meta_engine == ENGINE_DEFAULT else
                      ["--meta-engine", self.meta_engine, "--etcd-endpoints", ",".join(self.etcd_endpoints)])
            return [self.python, "-m", "fireflyfs.meta_service",
                    "--data-dir", str(self.data_dir(role)), "--listen", address, *engine,
                    "--metrics-listen", f"{HOST}:0",
                    *(["--heartbeat-timeout-ms", str(timeout)] if timeout else []), *no_fsync,
                    *(security or ["--admin-token-file", str(self.admin_token_file), *self._tls_flags(role)])]
        node_id = self._node_id(role)
        command = [self.python, "-m", "fireflyfs.storage_service", "--node-id", str(node_id),
                   "--data-dir", str(self.data_dir(role)), "--listen", f"{HOST}:0",
                   "--metrics-listen", f"{HOST}:0", "--mgmtd", ",".join(self.meta_addresses), "--targets", str(self.targets_per_node),
                   *no_fsync, *(security or ["--node-key-file", str(self.node_key_file(role)), *self._tls_flags(role)])]
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
        if role not in self.etcd_roles() + self.meta_roles():
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
            "meta_engine": self.meta_engine,
            "meta_servers": self.meta_servers,
            "meta_ports": self.meta_ports,
            "etcd_members": self.etcd_members,
            "etcd_ports": self.etcd_ports,
            "storage_nodes": self.storage_nodes,
            "targets_per_node": self.targets_per_node,
            "replicas": self.replicas,
            "heartbeat_timeout_ms": self.heartbeat_timeout_ms,
            "fsync": self.fsync,
            "insecure": self.insecure,
            "pids": {role: self.pid(role) for role in self.roles() + self._retired_meta_roles()},
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
        if not self.insecure:
            from fireflyfs.common import tls

            tls.ensure_ca(self._ca_dir)
        if self.etcd_members:
            from fireflyfs.deploy.etcd_cluster import etcd_binary

            etcd_binary()      # a ClusterError naming the Debian package when it is missing
        for sub in ("run", "logs"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        self.meta_ports = [port or pick_free_port() for port in self.meta_ports]
        self.port = self.meta_ports[0]
        if self.etcd_members:
            self.etcd    # picks the members' ports once; cluster.json keeps them
        self._save_state()
        deadline = time.monotonic() + self.startup_timeout_s
        self._stop(self._retired_meta_roles())
        if self.etcd_members:
            self._start_missing(self.etcd_roles())     # all at once: a member waits for its quorum
            self._wait_etcd(deadline)
        if not self.insecure and self._admin_token and not self.admin_token_file.exists():
            from fireflyfs.common.auth import write_token_file

            write_token_file(str(self.admin_token_file), self._admin_token)   # the meta adopts it
        self._start_missing(self.meta_roles())
        self._save_state()
        self._wait_meta(deadline)
        self._issue_node_keys()
        self._start_missing(self.storage_roles())
        self._save_state()
        self._wait_storage(deadline)
        if self.chain_table:
            self._create_chain_table(deadline)
            self.wait_chains(lambda states: "SERVING" in states, self._left(deadline),
                             "a SERVING target in every chain")
        if not self.insecure and not (os.environ.get("FFS_TOKEN") or os.environ.get("FFS_TOKEN_FILE")):
            # The process that starts a cluster acts as its admin (benchmarks, scripts), as it
            # trusts its CA: its clients find the token as any client does.
            os.environ["FFS_TOKEN_FILE"] = str(self.admin_token_file)
        log.info("cluster %s up at %s", self.base_dir, self.url)
        return self.url

    def _issue_node_keys(self) -> None:
        """Each storage node's key, asked of meta with the admin token once, kept in its data dir."""
        if self.insecure:
            return
        from fireflyfs.common.auth import write_token_file
        from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
        from fireflyfs.proto import meta_pb2, meta_pb2_grpc

        for role in self.storage_roles():
            path = self.node_key_file(role)
            if path.exists():
                continue
            with self.admin_channel(self.meta_address) as channel, rpc_errors_mapped():
                reply = meta_pb2_grpc.MetaStub(channel).NodeKey(
                    meta_pb2.NodeKeyRequest(node_id=self._node_id(role)), timeout=10.0)
            self.data_dir(role).mkdir(parents=True, exist_ok=True)
            write_token_file(str(path), reply.token)

    def _start_missing(self, roles: list[str]) -> None:
        for role in roles:
            if self.pid(role) is None:
                self._start(role)

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
        """Mgmtd.GetRoutingInfo of the running cluster (a RoutingInfo message), from the first
        meta server that answers; the last one's grpc.RpcError when none does."""
        import grpc

        failure: grpc.RpcError | None = None
        for address in self.meta_addresses:
            try:
                return self._routing_from(address, timeout_s)
            except grpc.RpcError as exc:
                failure = exc
        raise failure

    def _routing_from(self, address: str, timeout_s: float):
        from fireflyfs.common.rpc import make_channel
        from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

        with self.admin_channel(address) as channel:
            stub = mgmtd_pb2_grpc.MgmtdStub(channel)
            return stub.GetRoutingInfo(mgmtd_pb2.GetRoutingInfoRequest(), timeout=timeout_s).routing

    def _wait_etcd(self, deadline: float) -> None:
        roles = self.etcd_roles()
        while True:
            self._check_alive(roles, "the etcd members")
            unhealthy = [role for role in roles if not self.etcd.is_healthy(role)]
            if not unhealthy:
                return
            if time.monotonic() > deadline:
                raise self._timeout("the etcd members", roles, f"not yet healthy: {', '.join(unhealthy)}")
            time.sleep(0.1)

    def _wait_meta(self, deadline: float) -> None:
        """Until every meta server answers GetRoutingInfo."""
        import grpc

        roles = self.meta_roles()
        for role, address in zip(roles, self.meta_addresses):
            last = "no answer yet"
            while True:
                self._check_alive(roles, "the metadata service")
                try:
                    self._routing_from(address, timeout_s=1.0)
                    break
                except grpc.RpcError as exc:
                    last = f"{exc.code().name}: {exc.details()}"
                if time.monotonic() > deadline:
                    raise self._timeout(f"the metadata service at {address}", [role], last)
                time.sleep(0.1)

    def _wait_storage(self, deadline: float) -> None:
        """Wait until every storage node we run is registered, connected, and is that process."""
        import grpc
        from fireflyfs.proto import types_pb2

        storage = self.storage_roles()
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

    def _create_chain_table(self, deadline: float) -> None:
        """CreateChainTable at whichever meta server is the mgmtd primary (a standby answers
        NotPrimary, and right after start there may be none yet: ask around until the deadline)."""
        from fireflyfs.common.errors import Unavailable
        from fireflyfs.common.rpc import make_channel, rpc_errors_mapped
        from fireflyfs.proto import mgmtd_pb2, mgmtd_pb2_grpc

        request = mgmtd_pb2.CreateChainTableRequest(replicas=self.replicas, only_if_missing=True)
        reply = None
        while reply is None:
            for address in self.meta_addresses:
                try:
                    with self.admin_channel(address) as channel, rpc_errors_mapped():
                        reply = mgmtd_pb2_grpc.MgmtdStub(channel).CreateChainTable(request, timeout=10.0)
                    break
                except Unavailable as exc:     # NotPrimary among them
                    if time.monotonic() > deadline:
                        raise ClusterError(f"no meta server created the chain table "
                                           f"before the deadline: {exc}") from exc
            else:
                time.sleep(0.1)
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

        Storage nodes go first so they do not spin on an absent manager, then the
        meta servers, then the etcd members (a meta server stopping may still
        write to its store). Returns the roles that were running.
        """
        stopped = self._stop(self.storage_roles())
        stopped += self._stop(self.meta_roles() + self._retired_meta_roles())
        stopped += self._stop(self.etcd_roles())
        if self.state_file.exists():
            self._save_state()
        return stopped

    def _stop(self, roles: list[str]) -> list[str]:
        """SIGTERM those of roles that run, SIGKILL after stop_timeout_s; return the ones that ran."""
        running = [(role, pid) for role in roles if (pid := self.pid(role)) is not None]
        for role, pid in running:
            self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for role, pid in running:
            if not self._wait_gone(pid, role, deadline):
                log.warning("%s (pid %d) ignored SIGTERM; sending SIGKILL", role, pid)
                self._signal(pid, signal.SIGKILL)
                self._wait_gone(pid, role, time.monotonic() + self.stop_timeout_s)
        for role in roles:
            if self.pid(role) is None:
                with contextlib.suppress(FileNotFoundError):
                    self.pid_file(role).unlink()
        return [role for role, _ in running]

    def kill(self, role_or_node: str | int, sig: int = signal.SIGKILL, wait: bool = True) -> int:
        """Send sig to one process ("meta", "meta-2", "etcd-1", "storage-2" or 2); return its pid.

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
        """One row per process, in start order: role (etcd/meta/storage), name, node_id, pid,
        address, state and mgmtd. state is "running", "stopped", or for an etcd member whose
        process runs but does not answer healthy, "unhealthy". mgmtd is "primary" or "standby"
        for a meta server when the routing info names a primary (mgmtd_primary_id), else None.
        """
        from fireflyfs.proto import types_pb2

        storage_addresses: dict[int, str] = {}
        meta_ids: dict[str, int] = {}
        primary_id = 0
        if any(self.pid(role) is not None for role in self.meta_roles()):
            with contextlib.suppress(Exception):
                routing = self.routing(timeout_s=1.0)
                primary_id = routing.mgmtd_primary_id
                for node in routing.nodes:
                    if node.type == types_pb2.NODE_STORAGE:
                        storage_addresses[node.id] = node.address
                    elif node.type == types_pb2.NODE_META:
                        meta_ids[node.address] = node.id

        def row(role: str, name: str, pid: int | None, address: str, state: str | None = None,
                node_id: int | None = None, mgmtd: str | None = None) -> dict[str, Any]:
            return {"role": role, "name": name, "node_id": node_id, "pid": pid, "address": address,
                    "state": state or ("running" if pid is not None else "stopped"), "mgmtd": mgmtd}

        rows = []
        for name, endpoint in zip(self.etcd_roles(), self.etcd_endpoints):
            pid = self.pid(name)
            health = None if pid is None else "running" if self.etcd.is_healthy(name) else "unhealthy"
            rows.append(row(ETCD, name, pid, endpoint, health))
        for name, address in zip(self.meta_roles(), self.meta_addresses):
            pid = self.pid(name)
            node_id = meta_ids.get(address)
            mgmtd = None
            if primary_id and pid is not None:
                mgmtd = "primary" if node_id == primary_id else "standby"
            rows.append(row(META, name, pid, address, node_id=node_id, mgmtd=mgmtd))
        for name in self.storage_roles():
            node_id = self._node_id(name)
            pid = self.pid(name)
            rows.append(row("storage", name, pid,
                            storage_addresses.get(node_id, "") if pid is not None else "", node_id=node_id))
        return rows

    def __enter__(self) -> "LocalCluster":
        self.up()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()
