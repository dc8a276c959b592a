"""FireflyFS client: the Python API (FfsClient) and the fsspec filesystem (ffs://).

Modules, one job each: ``channels`` (per-process gRPC channels, fork safe),
``routing`` (cached chain routing), ``storage_client`` (chunk IO),
``meta_client`` (Meta RPCs), ``client`` (FfsClient), ``fsspec_fs`` and
``fsspec_file`` (the fsspec face). Imports are lazy so ``import
fireflyfs.client.cli`` stays cheap.
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
