"""Prometheus metrics of a service process, and the HTTP endpoint that serves them.

Every gRPC call a server handles is counted and timed per method
(``ffs_rpc_requests_total``, ``ffs_rpc_seconds``; rpc.make_server's
interceptor records them), a storage node counts the chunk bytes its bulk
listener moves (``ffs_bulk_bytes_total``), and each service adds the gauges
only it knows with a collector read at scrape time (targets' space and
chunks, inodes, GC backlog) so nothing is updated on the hot path for them.
The endpoint is off unless the service is given ``metrics_listen``
(``--metrics-listen HOST:PORT``); ``ffs cluster up`` turns it on for every
service and ``ffs admin metrics URL`` scrapes them all.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

RPC_REQUESTS = Counter("ffs_rpc_requests", "gRPC calls handled, by method and outcome (ok or the error class)",
                       ["service", "method", "outcome"])
RPC_SECONDS = Histogram("ffs_rpc_seconds", "Time to handle one gRPC call", ["service", "method"],
                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
BULK_BYTES = Counter("ffs_bulk_bytes", "Chunk bytes moved by the bulk listener: read (sent to clients), "
                     "write (from clients, at chain heads), update (chain updates from predecessors)", ["op"])


def split_method(full_method: str) -> tuple[str, str]:
    """"/fireflyfs.Meta/Stat" -> ("fireflyfs.Meta", "Stat")."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


class GaugesAtScrape(Collector):
    """Gauges computed when scraped: read() returns (name, help, labels, [(label values, value)])."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, list[str], list[tuple[list[str], float]]]]]):
        self._read = read

    def collect(self):
        for name, help_text, labels, samples in self._read():
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for values, value in samples:
                family.add_metric(values, value)
            yield family


def serve(listen: str, gauges: GaugesAtScrape | None = None) -> str:
    """Serve /metrics on listen ("host:port", port 0 picks one); the bound "host:port"."""
    if gauges is not None:
        REGISTRY.register(gauges)
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
    return f"{host or '127.0.0.1'}:{server.server_port}"
