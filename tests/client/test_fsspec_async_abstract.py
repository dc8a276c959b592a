"""fsspec's abstract suites (copy, get, put, pipe, open) for the asyncio face, on both engines.

As s3fs runs them for its async filesystem: the suites call sync methods, and
on an AsyncFileSystem built with ``asynchronous=False`` those are fsspec's
wrappers that run the face's coroutines on its IO loop (uvloop when
installed), so every test goes through ``_copy``/``_cp_file``, ``_get``/
``_get_file``, ``_put``/``_put_file``, ``_pipe_file``, ``_info``, ``_find``,
``_expand_path`` and the rest. The fixtures are test_fsspec_abstract.py's with
this face in place of the threaded one.
"""

import fsspec.tests.abstract as abstract
import pytest

from fireflyfs.client.fsspec_async import AsyncFireflyFileSystem
from tests.client.conftest import ENGINE_CLUSTERS
from tests.client.test_fsspec_abstract import FireflyFixtures
from tests.conftest import SESSION_ADMIN_TOKEN


class AsyncFaceFixtures(FireflyFixtures):
    @pytest.fixture(scope="class", params=list(ENGINE_CLUSTERS))
    @classmethod
    def fs(cls, request):
        running = request.getfixturevalue(ENGINE_CLUSTERS[request.param])
        fs = AsyncFireflyFileSystem(addresses=",".join(running.cluster.meta_addresses), token=SESSION_ADMIN_TOKEN)
        # The sync methods the suites call are fsspec's wrappers over the coroutines.
        for name in ("copy", "cp_file", "get", "get_file", "put", "put_file", "pipe_file", "cat_file", "info",
                     "find", "expand_path"):
            assert getattr(fs, name).__wrapped__ == getattr(fs, "_" + name), name
        return fs


class TestAsyncFaceCopy(abstract.AbstractCopyTests, AsyncFaceFixtures):
    pass


class TestAsyncFaceGet(abstract.AbstractGetTests, AsyncFaceFixtures):
    pass


class TestAsyncFacePut(abstract.AbstractPutTests, AsyncFaceFixtures):
    pass


class TestAsyncFacePipe(abstract.AbstractPipeTests, AsyncFaceFixtures):
    pass


class TestAsyncFaceOpen(abstract.AbstractOpenTests, AsyncFaceFixtures):
    pass
