"""FireflyFS client: the Python API (FfsClient) and the fsspec filesystem (ffs://).

Modules, one job each: ``channels`` (per-process gRPC channels, fork safe),
``config`` (ClientConfig: deadlines, retry budgets), ``routing`` (cached chain
routing: heads and serving replicas), ``replica_select`` (least-outstanding
read balancing), ``retry`` (bounded backoff), ``storage_client`` (chunk IO and
failover), ``meta_client`` (Meta RPCs with request ids), ``client``
(FfsClient), ``fsspec_fs`` and ``fsspec_file`` (the fsspec face), ``fsck`` and
``fsck_runner`` (replica comparison and repair). Imports are lazy so
``import fireflyfs.client.cli`` stays cheap.
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
