"""A small Fire-Flyer-like network on one machine: hosts in network namespaces behind a router.

    Testbed(TestbedSpec(name="tb", storage_hosts=2, peer_hosts=1), base_dir).up()

Hosts (namespace ``ffstb-<name>-<host>``, address 10.77.<i>.2/24, router side 10.77.<i>.1):

    sw        the router ("leaf switch"): ip_forward on, one veth to every host
    c         the client host: FireflyFS clients and HFReduce rank 0; the router's
              link toward it is the shaped bottleneck (testbed_shaping.py)
    m         the metadata/mgmtd service
    s1..sN    storage nodes, one FireflyFS storage process each
    p1..pK    peer compute hosts for the other HFReduce ranks
    m2..mM    more meta servers (meta_engine "etcd", meta_servers M)
    e1..eK    etcd members (meta_engine "etcd", etcd_members K)

With ``meta_engine="etcd"`` every etcd member and every meta server runs on a
host of its own, so cutting one host's link (``cut``) cuts exactly one
member or one meta server off, as on a real network.

Storage reads (s* -> c) and allreduce traffic (p* -> c) meet in the router's
queue toward c, as storage incast meets HFReduce at a leaf port in [FF] §VI.
Nothing is attached to the machine's own namespace: the 10.77.0.0/16
addresses exist only inside these namespaces.

Everything made is first journaled in BASE/testbed.json, and ``down()``
removes what the journal names and anything else carrying the testbed's
prefix, so it cleans up after a failed ``up()`` or a lost journal too.
FireflyFS services run through LocalCluster's commands (TestbedCluster below)
bound to namespace addresses, started by a controller process inside ``c``
(cluster readiness is checked over gRPC, which must run where the addresses
route).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

from . import netns, testbed_shaping
from .local_cluster import LocalCluster
from .testbed_shaping import ShapingSpec

log = logging.getLogger(__name__)

ROUTER = "sw"
CLIENT = "c"
META = "m"
meta_port = 9000
hfreduce_master_port = 29600
subnet = "10.77"


class TestbedError(RuntimeError):
    """The testbed could not be built or torn down as asked."""

    __test__ = False     # not a pytest test class (nor are the Testbed* classes below)


@dataclasses.dataclass(frozen=True)
class TestbedSpec:
    __test__ = False
    name: str = "tb"
    storage_hosts: int = 2
    peer_hosts: int = 1
    targets_per_node: int = 1
    replicas: int = 1
    # Namespace default TCP congestion control, e.g. "cubic" (fills queues as storage incast
    # does; bbr paces). Only algorithms in the machine's tcp_allowed_congestion_control can be
    # set per namespace; None keeps the default, and root's sockets may pick any (TCP_CONGESTION).
    congestion_control: str | None = None
    meta_engine: str = "lmdb"       # "etcd": etcd members and several meta servers, each on a host
    meta_servers: int = 1
    etcd_members: int = 0

    def hosts(self) -> list[str]:
        """Every host but the router, in address order (index i -> 10.77.i+1.0/24); hosts added
        later come last, so the first ones keep their addresses."""
        return ([CLIENT, META] + [f"s{i}" for i in range(1, self.storage_hosts + 1)]
                + [f"p{i}" for i in range(1, self.peer_hosts + 1)]
                + [f"m{i}" for i in range(2, self.meta_servers + 1)]
                + [f"e{i}" for i in range(1, self.etcd_members + 1)])

    def meta_host(self, index: int) -> str:
        """The host of meta server index (1-based)."""
        return META if index == 1 else f"m{index}"


class Testbed:
    """Build, inspect, shape and tear down one testbed; run commands on its hosts."""

    __test__ = False

    def __init__(self, spec: TestbedSpec | None = None, base_dir: str | os.PathLike | None = None) -> None:
        spec = spec or TestbedSpec()
        self.base_dir = pathlib.Path(base_dir or f"/tmp/ffstb-{spec.name}").resolve()
        saved = self._load()
        if saved.get("spec"):
            spec = TestbedSpec(**saved["spec"])
        self.spec = spec
        self.prefix = netns.namespace_prefix(spec.name)
        self._state = saved or {"spec": dataclasses.asdict(spec), "made": [], "shaping": None,
                                "pids": {}, "cluster": False}
        self._children: dict[int, subprocess.Popen] = {}

    # ---- names --------------------------------------------------------------------------

    @property
    def state_file(self) -> pathlib.Path:
        return self.base_dir / "testbed.json"

    def namespace(self, host: str) -> str:
        if host != ROUTER and host not in self.spec.hosts():
            raise ValueError(f"no host {host!r} in this testbed; hosts: {self.spec.hosts()}")
        return f"{self.prefix}{host}"

    def address(self, host: str) -> str:
        """The host's address (the router's side of that link is .1)."""
        return f"{subnet}.{self.spec.hosts().index(host) + 1}.2"

    def device_toward(self, host: str) -> str:
        """The router's interface toward host (the client's is the bottleneck)."""
        return f"to-{host}"

    @property
    def bottleneck(self) -> tuple[str, str]:
        return self.namespace(ROUTER), self.device_toward(CLIENT)

    @property
    def meta_address(self) -> str:
        return f"{self.address(META)}:{meta_port}"

    @property
    def meta_addresses(self) -> list[str]:
        return [f"{self.address(self.spec.meta_host(i))}:{meta_port}" for i in range(1, self.spec.meta_servers + 1)]

    @property
    def url(self) -> str:
        return f"ffs://{','.join(self.meta_addresses)}"

    def cut(self, host: str, down: bool = True) -> None:
        """Take host's link at the router down (or back up): the host is cut off from every other."""
        netns.run(netns.in_namespace(self.namespace(ROUTER), ["ip", "link", "set", self.device_toward(host),
                                                              "down" if down else "up"]))

    # ---- state --------------------------------------------------------------------------

    def _load(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise TestbedError(f"unreadable {self.state_file}: {exc}") from exc

    def _save(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def _journal(self, kind: str, name: str) -> None:
        self._state["made"].append({"kind": kind, "name": name})
        self._save()

    # ---- lifecycle ----------------------------------------------------------------------

    def up(self, services: bool = True, shaping: ShapingSpec | None = None,
           timeout_s: float = 90.0) -> "Testbed":
        """Build the namespaces and links (if not there), shape, and start the services.

        On failure everything made so far stays journaled; call down().
        """
        reason = netns.available()
        if reason:
            raise TestbedError(f"cannot build a testbed here: {reason}")
        if not netns.list_namespaces(self.namespace(ROUTER)):
            self._build()
        if shaping is not None:
            self.apply_shaping(shaping)
        if services:
            self.start_services(timeout_s)
        return self

    def _build(self) -> None:
        builder = netns.Builder(self._journal)
        router = self.namespace(ROUTER)
        builder.namespace(router)
        builder.sysctl(router, "net.ipv4.ip_forward", "1")
        for index, host in enumerate(self.spec.hosts(), start=1):
            namespace = self.namespace(host)
            builder.namespace(namespace)
            if self.spec.congestion_control:
                self._set_congestion_control(builder, namespace)
            builder.link(namespace, "eth0", router, self.device_toward(host))
            builder.ip(namespace, "addr", "add", f"{subnet}.{index}.2/24", "dev", "eth0")
            builder.ip(router, "addr", "add", f"{subnet}.{index}.1/24", "dev", self.device_toward(host))
            builder.ip(namespace, "route", "add", "default", "via", f"{subnet}.{index}.1")
        log.info("testbed %s: %d hosts behind %s", self.spec.name, len(self.spec.hosts()), router)

    def _set_congestion_control(self, builder: netns.Builder, namespace: str) -> None:
        """Best effort: a namespace may only pick an algorithm the machine allows
        (net.ipv4.tcp_allowed_congestion_control, which we do not change); sockets
        of root processes can still choose any with TCP_CONGESTION."""
        try:
            builder.sysctl(namespace, "net.ipv4.tcp_congestion_control", self.spec.congestion_control)
        except netns.NetnsError as exc:
            log.warning("keeping the default congestion control in %s: %s", namespace, exc)

    def down(self) -> dict:
        """Stop every process and remove every namespace (links and qdiscs go with them)
        and the services' data directory.

        Works from the journal and by prefix, so after any failure; returns what was removed.
        """
        with contextlib.suppress(Exception):
            if self._state.get("cluster"):
                self.cluster().down()
        namespaces = {m["name"] for m in self._state.get("made", []) if m["kind"] == "namespace"}
        namespaces.update(netns.list_namespaces(self.prefix))
        killed = []
        for namespace in sorted(namespaces, key=lambda n: n.endswith(f"-{ROUTER}")):
            killed += netns.pids_in(namespace)
            netns.delete_namespace(namespace)
        for proc in self._children.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        left = netns.list_namespaces(self.prefix)
        if left:
            raise TestbedError(f"namespaces still present after down: {left}")
        shutil.rmtree(self.base_dir / "cluster", ignore_errors=True)   # services' data: fresh each up
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        self._state = {"spec": dataclasses.asdict(self.spec), "made": [], "shaping": None,
                       "pids": {}, "cluster": False}
        return {"namespaces": sorted(namespaces), "processes_killed": sorted(set(killed))}

    def status(self) -> dict:
        present = netns.list_namespaces(self.prefix)
        return {
            "name": self.spec.name, "dir": str(self.base_dir), "up": bool(present),
            "namespaces": present,
            "hosts": {h: self.address(h) for h in self.spec.hosts()},
            "meta": self.meta_address if self._state.get("cluster") else None,
            "shaping": self._state.get("shaping"),
            "processes": {ns: netns.pids_in(ns) for ns in present},
        }

    # ---- shaping ------------------------------------------------------------------------

    def apply_shaping(self, spec: ShapingSpec) -> None:
        """(Re)install the bottleneck on the router's link toward the client host."""
        router, device = self.bottleneck
        self.remove_shaping()
        self._state["shaping"] = spec.to_json()
        self._save()
        builder = netns.Builder(self._journal)
        for command in testbed_shaping.htb_commands(device, spec):
            builder.tc(router, *command)

    def remove_shaping(self) -> None:
        router, device = self.bottleneck
        netns.run(["tc", "-n", router, *testbed_shaping.remove_command(device)], check=False)
        self._state["shaping"] = None
        self._save()

    def class_counters(self) -> dict[str, dict[str, int]]:
        """Per-class bytes/packets/drops at the bottleneck, by traffic class name ('shared' mode: 'shared')."""
        router, device = self.bottleneck
        output = netns.run(["tc", "-n", router, "-s", "class", "show", "dev", device]).stdout
        shared = (self._state.get("shaping") or {}).get("mode") == "shared"
        counters = {}
        for classid, values in testbed_shaping.parse_class_counters(output).items():
            name = testbed_shaping.class_name(classid)
            counters["shared" if shared and name == "control" else name] = values
        return counters

    # ---- running things -----------------------------------------------------------------

    def command(self, host: str, argv: list[str]) -> list[str]:
        return netns.in_namespace(self.namespace(host), argv)

    def client_env(self) -> dict[str, str]:
        """The environment a client on a host needs for the testbed's cluster: its CA and the
        admin's token, as ``ffs cluster up`` gives the process that starts a cluster (unless the
        caller set its own)."""
        env = dict(os.environ)
        if self._state.get("cluster"):
            from fireflyfs.common import auth, tls

            cluster = self.cluster()
            if cluster.ca_file.exists():
                env.setdefault(tls.CA_ENV, str(cluster.ca_file))
            if cluster.admin_token_file.exists() and not (env.get(auth.TOKEN_ENV) or env.get(auth.TOKEN_FILE_ENV)):
                env[auth.TOKEN_FILE_ENV] = str(cluster.admin_token_file)
        return env

    def run(self, host: str, argv: list[str], timeout_s: float = 60.0,
            check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run argv on host and wait (output captured as text)."""
        kwargs.setdefault("env", self.client_env())
        result = subprocess.run(self.command(host, argv), capture_output=True, text=True,
                                timeout=timeout_s, stdin=subprocess.DEVNULL, **kwargs)
        if check and result.returncode != 0:
            raise TestbedError(f"{' '.join(argv)} on {host} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return result

    def spawn(self, host: str, argv: list[str], label: str, **kwargs) -> subprocess.Popen:
        """Start argv on host in the background (killed by down() if still running)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("env", self.client_env())
        proc = subprocess.Popen(self.command(host, argv), start_new_session=True, **kwargs)
        self._children[proc.pid] = proc
        self._state["pids"][label] = proc.pid
        self._save()
        return proc

    def python(self, host: str, module: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(host, [sys.executable, "-m", module, *args], **kwargs)

    def start_hfreduce(self, hosts: list[str], *args: str, **kwargs) -> list[subprocess.Popen]:
        """One HFReduce worker rank per host (rank order = hosts order, rank 0's host is master);
        args go to ``python -m fireflyfs.fabric.hfreduce``; stdout is piped (latency JSON)."""
        master = f"{self.address(hosts[0])}:{hfreduce_master_port}"
        kwargs.setdefault("stdout", subprocess.PIPE)
        return [self.spawn(host, [sys.executable, "-m", "fireflyfs.fabric.hfreduce", "--rank", str(rank),
                                  "--world-size", str(len(hosts)), "--master", master, *args],
                           label=f"hfreduce-{rank}", **kwargs)
                for rank, host in enumerate(hosts)]

    # ---- FireflyFS services -------------------------------------------------------------

    def cluster(self) -> "TestbedCluster":
        return TestbedCluster(self)

    def start_services(self, timeout_s: float = 90.0) -> str:
        """Meta on m, one storage process per s<i>, chain table created; returns the URL.

        The controller (LocalCluster.up) runs inside the client namespace so its
        gRPC readiness checks reach the namespace addresses.
        """
        self._state["cluster"] = True
        self._save()
        self.run(CLIENT, [sys.executable, "-m", "fireflyfs.deploy.testbed", "--dir", str(self.base_dir),
                          "cluster-up", "--timeout", str(timeout_s)], timeout_s=timeout_s + 30)
        return self.url


class TestbedCluster(LocalCluster):
    """LocalCluster whose processes live in the testbed's namespaces, bound to their addresses."""

    __test__ = False

    def __init__(self, testbed: Testbed, **kwargs) -> None:
        self.testbed = testbed
        spec = testbed.spec
        etcd = dict(meta_engine=spec.meta_engine, etcd_members=spec.etcd_members,
                    meta_servers=spec.meta_servers) if spec.meta_engine != "lmdb" else {}
        super().__init__(testbed.base_dir / "cluster", storage_nodes=spec.storage_hosts,
                         targets_per_node=spec.targets_per_node, port=meta_port,
                         replicas=spec.replicas, **etcd, **kwargs)

    @property
    def host(self) -> str:
        return self.testbed.address(META)

    @property
    def meta_addresses(self) -> list[str]:
        return self.testbed.meta_addresses

    @property
    def etcd(self):
        """The members bound to their hosts' addresses (e1, e2, ...)."""
        if self._etcd is None:
            from fireflyfs.deploy.etcd_cluster import EtcdCluster, member_name

            hosts = {member_name(i): self.testbed.address(f"e{i + 1}") for i in range(self.etcd_members)}
            self._etcd = EtcdCluster(self.base_dir, self.etcd_members, ports=self.etcd_ports, hosts=hosts)
            self.etcd_ports = self._etcd.ports
        return self._etcd

    def role_host(self, role: str) -> str:
        if role in self.etcd_roles():
            return f"e{self.etcd_roles().index(role) + 1}"
        if role in self.meta_roles():
            return self.testbed.spec.meta_host(self.meta_roles().index(role) + 1)
        return f"s{self._node_id(role)}"

    def role_addresses(self, role: str) -> list[str]:
        return [self.testbed.address(self.role_host(role)), *super().role_addresses(role)]

    def command(self, role: str) -> list[str]:
        argv = super().command(role)
        host = self.role_host(role)
        if role in self.meta_roles():
            argv[argv.index("--listen") + 1] = self.meta_addresses[self.meta_roles().index(role)]
        elif role not in self.etcd_roles():
            argv[argv.index("--listen") + 1] = f"{self.testbed.address(host)}:0"
        return self.testbed.command(host, argv)


def main(argv: list[str] | None = None) -> int:
    """Internal: the controller run inside the client namespace by Testbed.start_services."""
    parser = argparse.ArgumentParser(prog="python -m fireflyfs.deploy.testbed")
    parser.add_argument("--dir", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("cluster-up")
    up.add_argument("--timeout", type=float, default=90.0)
    sub.add_parser("cluster-status")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    testbed = Testbed(base_dir=args.dir)
    cluster = testbed.cluster()
    if args.command == "cluster-up":
        cluster.startup_timeout_s = args.timeout
        print(cluster.up())
    else:
        print(json.dumps(cluster.status()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
