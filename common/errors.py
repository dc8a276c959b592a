"""The one error hierarchy of FireflyFS, and its one mapping to and from gRPC.

    FfsError
    ├── NotFound            (FileNotFoundError)
    ├── AlreadyExists       (FileExistsError)
    ├── NotADirectory       (NotADirectoryError)
    ├── IsADirectory        (IsADirectoryError)
    ├── DirectoryNotEmpty   (OSError ENOTEMPTY)
    ├── PermissionDenied    (PermissionError)
    ├── InvalidArgument     (ValueError)
    │   └── InvalidPath
    ├── TooLarge            (ValueError): a message or value over a limit
    ├── ChecksumMismatch    (OSError EIO): stored or sent bytes fail their CRC32C
    ├── Retryable           (OSError EAGAIN): try again after refreshing routing
    │   ├── StaleChainVersion
    │   ├── ChunkNotCommitted
    │   ├── NotHead
    │   ├── MissingUpdate   (a chain successor lacks the update before this one)
    │   └── Unavailable     (a service could not be reached)
    ├── NoSpace             (OSError ENOSPC)
    ├── NoChainTable        (OSError): the cluster has no chain table yet
    └── Internal            (OSError EIO): a broken invariant on a server

Each class inherits the Python built-in users expect, so fsspec callers catch
``FileNotFoundError`` as usual. On the wire a server aborts with the class's
gRPC status code, its message, and the class name in the ``ffs-error``
trailing metadata; ``error_from_rpc`` turns that back into the same class.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Iterator

import grpc

ERROR_METADATA_KEY = "ffs-error"


class FfsError(Exception):
    """Base of every FireflyFS error."""

    grpc_code = grpc.StatusCode.UNKNOWN
    errno_value = errno.EIO

    def __init__(self, message: str = "", *args: object) -> None:
        if isinstance(self, OSError) and not args:
            OSError.__init__(self, self.errno_value, message)
        else:
            Exception.__init__(self, message, *args)
        self.message = message

    def __str__(self) -> str:
        return self.message or type(self).__name__


class NotFound(FfsError, FileNotFoundError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    errno_value = errno.ENOENT


class AlreadyExists(FfsError, FileExistsError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    errno_value = errno.EEXIST


class NotADirectory(FfsError, NotADirectoryError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    errno_value = errno.ENOTDIR


class IsADirectory(FfsError, IsADirectoryError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    errno_value = errno.EISDIR


class DirectoryNotEmpty(FfsError, OSError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    errno_value = errno.ENOTEMPTY


class PermissionDenied(FfsError, PermissionError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    errno_value = errno.EACCES


class InvalidArgument(FfsError, ValueError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    errno_value = errno.EINVAL


class InvalidPath(InvalidArgument):
    pass


class TooLarge(FfsError, ValueError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    errno_value = errno.EFBIG


class ChecksumMismatch(FfsError, OSError):
    grpc_code = grpc.StatusCode.DATA_LOSS
    errno_value = errno.EIO


class Retryable(FfsError, OSError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    errno_value = errno.EAGAIN


class StaleChainVersion(Retryable):
    grpc_code = grpc.StatusCode.ABORTED


class ChunkNotCommitted(Retryable):
    grpc_code = grpc.StatusCode.ABORTED


class NotHead(Retryable):
    grpc_code = grpc.StatusCode.ABORTED


class MissingUpdate(Retryable):
    """CRAQ: an update's version is more than one past the successor's chunk version."""

    grpc_code = grpc.StatusCode.ABORTED


class Unavailable(Retryable):
    grpc_code = grpc.StatusCode.UNAVAILABLE


class NoSpace(FfsError, OSError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    errno_value = errno.ENOSPC


class NoChainTable(FfsError, OSError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    errno_value = errno.ENODEV


class Internal(FfsError, OSError):
    grpc_code = grpc.StatusCode.INTERNAL
    errno_value = errno.EIO


ERRORS_BY_NAME: dict[str, type[FfsError]] = {
    cls.__name__: cls
    for cls in (NotFound, AlreadyExists, NotADirectory, IsADirectory, DirectoryNotEmpty,
                PermissionDenied, InvalidArgument, InvalidPath, TooLarge, ChecksumMismatch,
                Retryable, StaleChainVersion, ChunkNotCommitted, NotHead, MissingUpdate, Unavailable, NoSpace,
                NoChainTable, Internal)
}

# gRPC codes raised by the transport itself (no ffs-error metadata).
_ERRORS_BY_GRPC_CODE: dict[grpc.StatusCode, type[FfsError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: TooLarge,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.DATA_LOSS: ChecksumMismatch,
    grpc.StatusCode.UNIMPLEMENTED: Internal,
}


def error_name(exc: FfsError) -> str:
    """The wire name of an error, as used in per-item statuses of batch replies."""
    return type(exc).__name__


def error_from_name(name: str, message: str) -> FfsError:
    """Rebuild an error from a per-item status (error name + message)."""
    return ERRORS_BY_NAME.get(name, Internal)(message)


def error_from_rpc(rpc_error: grpc.RpcError) -> FfsError:
    """Turn a failed call into the FfsError the server raised (or the closest one)."""
    code = rpc_error.code() if hasattr(rpc_error, "code") else grpc.StatusCode.UNKNOWN
    details = (rpc_error.details() if hasattr(rpc_error, "details") else "") or ""
    name = ""
    trailing = rpc_error.trailing_metadata() if hasattr(rpc_error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == ERROR_METADATA_KEY:
            name = value
    if name in ERRORS_BY_NAME:
        return ERRORS_BY_NAME[name](details)
    cls = _ERRORS_BY_GRPC_CODE.get(code, Internal)
    return cls(f"{code.name}: {details}" if details else code.name)


@contextlib.contextmanager
def rpc_errors_mapped() -> Iterator[None]:
    """Client side: raise the FfsError a failed call carries, chained to the RpcError."""
    try:
        yield
    except grpc.RpcError as rpc_error:
        raise error_from_rpc(rpc_error) from rpc_error


def abort_with(context: grpc.ServicerContext, exc: FfsError) -> None:
    """Server side: end the call with exc's status code, message and name. Never returns."""
    context.set_trailing_metadata(((ERROR_METADATA_KEY, error_name(exc)),))
    context.abort(exc.grpc_code, str(exc))
