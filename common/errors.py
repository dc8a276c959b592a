"""The one error hierarchy of FireflyFS, with the Python built-in each error also is.

    FfsError
    ├── NotFound            (FileNotFoundError)
    ├── AlreadyExists       (FileExistsError)
    ├── NotADirectory       (NotADirectoryError)
    ├── IsADirectory        (IsADirectoryError)
    ├── DirectoryNotEmpty   (OSError ENOTEMPTY)
    ├── PermissionDenied    (PermissionError)
    │   └── Unauthenticated (no token, or one the service does not accept)
    ├── InvalidArgument     (ValueError)
    │   └── InvalidPath
    ├── TooLarge            (ValueError): a message or value over a limit
    ├── ChecksumMismatch    (OSError EIO): stored or sent bytes fail their CRC32C
    ├── Retryable           (OSError EAGAIN): try again after refreshing routing
    │   ├── StaleChainVersion
    │   ├── ChunkNotCommitted
    │   ├── NotHead
    │   ├── MissingUpdate   (a chain successor lacks the update before this one)
    │   ├── Unavailable     (a service could not be reached)
    │   │   └── NotPrimary  (this mgmtd is a standby, or lost its lease; the message names the primary)
    │   └── Conflict        (an optimistic metadata transaction kept losing to other writers)
    ├── NoSpace             (OSError ENOSPC)
    ├── NoChainTable        (OSError): the cluster has no chain table yet
    └── Internal            (OSError EIO): a broken invariant on a server

Each class inherits the Python built-in users expect, so fsspec callers catch
``FileNotFoundError`` as usual. This module imports no gRPC, so the pure
protocol cores can raise these errors; the one mapping to gRPC status codes and
back (``abort_with``, ``error_from_rpc``, ``rpc_errors_mapped``) is the RPC
layer's, in ``common/rpc.py``. Batch replies carry per-item errors by name
(``error_name``/``error_from_name``).
"""

from __future__ import annotations

import errno


class FfsError(Exception):
    """Base of every FireflyFS error."""

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
    errno_value = errno.ENOENT


class AlreadyExists(FfsError, FileExistsError):
    errno_value = errno.EEXIST


class NotADirectory(FfsError, NotADirectoryError):
    errno_value = errno.ENOTDIR


class IsADirectory(FfsError, IsADirectoryError):
    errno_value = errno.EISDIR


class DirectoryNotEmpty(FfsError, OSError):
    errno_value = errno.ENOTEMPTY


class PermissionDenied(FfsError, PermissionError):
    errno_value = errno.EACCES


class Unauthenticated(PermissionDenied):
    """The call carried no credentials, or ones the service does not accept."""


class InvalidArgument(FfsError, ValueError):
    errno_value = errno.EINVAL


class InvalidPath(InvalidArgument):
    pass


class TooLarge(FfsError, ValueError):
    errno_value = errno.EFBIG


class ChecksumMismatch(FfsError, OSError):
    errno_value = errno.EIO


class Retryable(FfsError, OSError):
    errno_value = errno.EAGAIN


class StaleChainVersion(Retryable):
    """CRAQ: the request's chain version is not the replica's (routing moved on)."""


class ChunkNotCommitted(Retryable):
    """CRAQ: the chunk has a pending update; read again after the commit or from the tail."""


class NotHead(Retryable):
    """A client write reached a target that is not its chain's head."""


class MissingUpdate(Retryable):
    """CRAQ: an update's version is more than one past the successor's chunk version."""


class Unavailable(Retryable):
    """A service could not be reached, or answered too late."""


class NotPrimary(Unavailable):
    """This mgmtd is not the primary (a standby, or its election lease was lost): ask the primary."""


class Conflict(Retryable):
    """A metadata transaction lost to concurrent writers on every try (etcd engine); nothing applied."""


class NoSpace(FfsError, OSError):
    errno_value = errno.ENOSPC


class NoChainTable(FfsError, OSError):
    errno_value = errno.ENODEV


class Internal(FfsError, OSError):
    errno_value = errno.EIO


ERRORS_BY_NAME: dict[str, type[FfsError]] = {
    cls.__name__: cls
    for cls in (NotFound, AlreadyExists, NotADirectory, IsADirectory, DirectoryNotEmpty,
                PermissionDenied, Unauthenticated, InvalidArgument, InvalidPath, TooLarge, ChecksumMismatch,
                Retryable, StaleChainVersion, ChunkNotCommitted, NotHead, MissingUpdate, Unavailable, NotPrimary, Conflict, NoSpace,
                NoChainTable, Internal)
}


def error_name(exc: FfsError) -> str:
    """The wire name of an error, as used in per-item statuses of batch replies."""
    return type(exc).__name__


def error_from_name(name: str, message: str) -> FfsError:
    """Rebuild an error from a per-item status (error name + message)."""
    return ERRORS_BY_NAME.get(name, Internal)(message)


def require(value, what: str):
    """value, unless it is None: then Internal naming what is missing.

    For invariants of the protocol code where None would mean a bug: unlike an
    assert, the check survives ``python -O``, and a caller never ends up
    raising or writing None.
    """
    if value is None:
        raise Internal(f"broken invariant: {what} is missing")
    return value
