"""FireflyFS client: the Python API (FfsClient) and the fsspec filesystem (ffs://).

Modules, one job each: ``channels`` (per-process gRPC channels, fork safe),
``config`` (ClientConfig: deadlines, retry budgets), ``routing`` (cached chain
routing: heads and serving replicas), ``replica_select`` (least-outstanding
read balancing), ``retry`` (bounded backoff), ``storage_client`` (chunk IO and
failover), ``meta_client`` (Meta RPCs with request ids), ``client``
(FfsClient), ``fsspec_fs`` and ``fsspec_file`` (the fsspec face).

The package imports nothing from ``fireflyfs.cli``, ``fireflyfs.deploy`` or
``fireflyfs.bench`` (tests/test_layers.py checks). The names below load on
first use, so importing one submodule (``fireflyfs.client.config`` in a
DataLoader worker, say) does not load fsspec and every gRPC stub.
"""

__all__ = ["FfsClient", "FileHandle", "FireflyFileSystem", "FireflyFile"]


def __getattr__(name):
    if name in ("FfsClient", "FileHandle"):
        from . import client
        return getattr(client, name)
    if name == "FireflyFileSystem":
        from .fsspec_fs import FireflyFileSystem
        return FireflyFileSystem
    if name == "FireflyFile":
        from .fsspec_file import FireflyFile
        return FireflyFile
    raise AttributeError(name)
