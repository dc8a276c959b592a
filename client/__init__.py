"""FireflyFS client: the Python API (FfsClient) and the fsspec filesystem (ffs://).

Modules, one job each:

- the face: ``client`` (FfsClient), ``fsspec_fs`` and ``fsspec_file`` (the
  fsspec filesystem), ``fsspec_async`` (its asyncio face, an fsspec
  AsyncFileSystem over it), ``arrow_fs`` (pyarrow), ``batch_read`` (read_batch's
  buffer and results), ``streams`` (readahead reader, write-behind writer);
- metadata: ``meta_client`` (Meta RPCs with request ids, coalesced stats),
  ``session_lease`` (the per-process renewer that keeps write sessions alive);
- storage, layered as httpx is: ``storage_client`` (StorageClient: routing,
  replica choice, batching, in-flight limits, retries and failover) over one
  ``storage_transport`` (the interface: one request to one node), whose
  implementations are ``grpc_transport`` (Storage.* RPCs) and
  ``bulk_transport`` (the bulk listeners, gRPC where there is none; its
  connections are ``bulk_client``'s); ``buffers`` (read ranges and the bytes
  they land in), ``rts`` (request-to-send permits);
- shared plumbing: ``channels`` (per-process gRPC channels and IO threads,
  fork safe), ``config`` (ClientConfig: deadlines, retry budgets, limits),
  ``routing`` (cached chain routing: heads and serving replicas),
  ``replica_select`` (least-outstanding read balancing), ``retry`` (bounded
  backoff), ``bad_replicas`` (reports of replicas that sent rotten bytes).

The package imports nothing from ``fireflyfs.cli``, ``fireflyfs.deploy`` or
``fireflyfs.bench`` (tests/test_layers.py checks). The names below load on
first use, so importing one submodule (``fireflyfs.client.config`` in a
DataLoader worker, say) does not load fsspec and every gRPC stub.
"""

__all__ = ["FfsClient", "FileHandle", "FireflyFileSystem", "FireflyFile", "AsyncFireflyFileSystem"]


def __getattr__(name):
    if name in ("FfsClient", "FileHandle"):
        from . import client
        return getattr(client, name)
    if name == "FireflyFileSystem":
        from .fsspec_fs import FireflyFileSystem
        return FireflyFileSystem
    if name == "AsyncFireflyFileSystem":
        from .fsspec_async import AsyncFireflyFileSystem
        return AsyncFireflyFileSystem
    if name == "FireflyFile":
        from .fsspec_file import FireflyFile
        return FireflyFile
    raise AttributeError(name)
