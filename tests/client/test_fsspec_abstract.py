"""fsspec's own abstract test suites (copy, get, put, pipe, open) against a real cluster.

Wired as s3fs wires them (s3fs/tests/derived): the fixtures name our
filesystem, a fresh base directory per test class and posix joins; every
test then runs unchanged, on both metadata engines. FireflyFS has real directories, so
``supports_empty_directories`` keeps fsspec's default (True).
"""

import posixpath
import uuid

import fsspec.tests.abstract as abstract
import pytest

from tests.client.conftest import ENGINE_CLUSTERS
from tests.conftest import fsspec_on


class FireflyFixtures(abstract.AbstractFixtures):
    @pytest.fixture(scope="class", params=list(ENGINE_CLUSTERS))
    @classmethod
    def fs(cls, request):
        return fsspec_on(request.getfixturevalue(ENGINE_CLUSTERS[request.param]))

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self, fs):
        path = f"/abstract-{uuid.uuid4().hex[:10]}"
        yield path
        if fs.exists(path):
            fs.rm(path, recursive=True)


class TestFireflyCopy(abstract.AbstractCopyTests, FireflyFixtures):
    pass


class TestFireflyGet(abstract.AbstractGetTests, FireflyFixtures):
    pass


class TestFireflyPut(abstract.AbstractPutTests, FireflyFixtures):
    pass


class TestFireflyPipe(abstract.AbstractPipeTests, FireflyFixtures):
    pass


class TestFireflyOpen(abstract.AbstractOpenTests, FireflyFixtures):
    pass
