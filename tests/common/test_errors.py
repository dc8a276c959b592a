"""The error hierarchy (common/errors.py): built-in bases, names on the wire; and the gRPC mapping both ways (common/rpc.py)."""

from __future__ import annotations

import errno

import grpc
import pytest

from fireflyfs.common import errors
from fireflyfs.common.errors import ERRORS_BY_NAME, FfsError, error_from_name, error_name
from fireflyfs.common.rpc import ERROR_METADATA_KEY, abort_with, error_from_rpc, rpc_errors_mapped, status_of

BUILTIN_OF = {
    "NotFound": FileNotFoundError, "AlreadyExists": FileExistsError,
    "NotADirectory": NotADirectoryError, "IsADirectory": IsADirectoryError,
    "DirectoryNotEmpty": OSError, "PermissionDenied": PermissionError, "Unauthenticated": PermissionError,
    "InvalidArgument": ValueError, "InvalidPath": ValueError, "TooLarge": ValueError,
    "ChecksumMismatch": OSError, "Retryable": OSError, "StaleChainVersion": OSError,
    "ChunkNotCommitted": OSError, "NotHead": OSError, "MissingUpdate": OSError, "Unavailable": OSError, "NotPrimary": OSError, "Conflict": OSError,
    "NoSpace": OSError, "NoChainTable": OSError, "Internal": OSError,
}

# The status each error aborts with: part of the wire contract, so pinned here as data.
S = grpc.StatusCode
STATUS_OF = {
    "NotFound": S.NOT_FOUND, "AlreadyExists": S.ALREADY_EXISTS,
    "NotADirectory": S.FAILED_PRECONDITION, "IsADirectory": S.FAILED_PRECONDITION,
    "DirectoryNotEmpty": S.FAILED_PRECONDITION, "PermissionDenied": S.PERMISSION_DENIED,
    "Unauthenticated": S.UNAUTHENTICATED, "InvalidArgument": S.INVALID_ARGUMENT, "InvalidPath": S.INVALID_ARGUMENT, "TooLarge": S.RESOURCE_EXHAUSTED,
    "ChecksumMismatch": S.DATA_LOSS, "Retryable": S.UNAVAILABLE, "StaleChainVersion": S.ABORTED,
    "ChunkNotCommitted": S.ABORTED, "NotHead": S.ABORTED, "MissingUpdate": S.ABORTED, "Unavailable": S.UNAVAILABLE,
    "NotPrimary": S.UNAVAILABLE, "Conflict": S.ABORTED,
    "NoSpace": S.RESOURCE_EXHAUSTED, "NoChainTable": S.FAILED_PRECONDITION, "Internal": S.INTERNAL,
}


class FakeRpcError(grpc.RpcError):
    """Looks like a failed grpc call: code, details, trailing metadata."""

    def __init__(self, code, details="", trailing=()):
        self._code, self._details, self._trailing = code, details, tuple(trailing)

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


class FakeContext:
    class Aborted(Exception):
        pass

    def __init__(self):
        self.trailing = None

    def set_trailing_metadata(self, metadata):
        self.trailing = metadata

    def abort(self, code, details):
        self.code, self.details = code, details
        raise self.Aborted()


def test_every_error_is_named_and_has_its_builtin():
    assert set(ERRORS_BY_NAME) == set(BUILTIN_OF)
    for name, cls in ERRORS_BY_NAME.items():
        assert issubclass(cls, FfsError)
        assert issubclass(cls, BUILTIN_OF[name]), name
        assert cls.__name__ == name
        assert getattr(errors, name) is cls


def test_retryable_family():
    for name in ("StaleChainVersion", "ChunkNotCommitted", "NotHead", "MissingUpdate", "Unavailable",
                 "NotPrimary", "Conflict"):
        assert issubclass(ERRORS_BY_NAME[name], errors.Retryable)
    assert not issubclass(errors.NotFound, errors.Retryable)
    assert issubclass(errors.InvalidPath, errors.InvalidArgument)


def test_oserror_subclasses_carry_errno_and_message():
    exc = errors.NotFound("/a/b missing")
    assert exc.errno == errno.ENOENT
    assert str(exc) == "/a/b missing"
    assert errors.DirectoryNotEmpty("x").errno == errno.ENOTEMPTY
    assert errors.NoSpace("full").errno == errno.ENOSPC
    assert str(errors.Internal()) == "Internal"
    with pytest.raises(FileNotFoundError):
        raise errors.NotFound("gone")


@pytest.mark.parametrize("name", sorted(BUILTIN_OF))
def test_name_round_trip(name):
    cls = ERRORS_BY_NAME[name]
    exc = error_from_name(error_name(cls("why")), "why")
    assert type(exc) is cls
    assert str(exc) == "why"


def test_unknown_name_becomes_internal():
    exc = error_from_name("NoSuchError", "boom")
    assert type(exc) is errors.Internal and str(exc) == "boom"


@pytest.mark.parametrize("name", sorted(BUILTIN_OF))
def test_server_abort_then_client_mapping_round_trip(name):
    cls = ERRORS_BY_NAME[name]
    context = FakeContext()
    with pytest.raises(FakeContext.Aborted):
        abort_with(context, cls("the reason"))
    assert context.code == STATUS_OF[name] == status_of(cls)
    assert context.trailing == ((ERROR_METADATA_KEY, name),)
    back = error_from_rpc(FakeRpcError(context.code, context.details, context.trailing))
    assert type(back) is cls and str(back) == "the reason"


@pytest.mark.parametrize("code, cls", [
    (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
    (grpc.StatusCode.DEADLINE_EXCEEDED, errors.Unavailable),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.TooLarge),
    (grpc.StatusCode.NOT_FOUND, errors.NotFound),
    (grpc.StatusCode.UNIMPLEMENTED, errors.Internal),
    (grpc.StatusCode.UNKNOWN, errors.Internal),
])
def test_transport_errors_without_metadata(code, cls):
    exc = error_from_rpc(FakeRpcError(code, "connection refused"))
    assert type(exc) is cls
    assert code.name in str(exc) and "connection refused" in str(exc)


def test_rpc_errors_mapped_chains_the_cause():
    original = FakeRpcError(grpc.StatusCode.NOT_FOUND, "no /x", [(ERROR_METADATA_KEY, "NotFound")])
    with pytest.raises(FileNotFoundError) as info:
        with rpc_errors_mapped():
            raise original
    assert isinstance(info.value, errors.NotFound)
    assert info.value.__cause__ is original


def test_rpc_errors_mapped_leaves_other_exceptions_alone():
    with pytest.raises(KeyError):
        with rpc_errors_mapped():
            raise KeyError("x")
