from fireflyfs.proto import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatRequest(_message.Message):
    __slots__ = ("path", "follow_symlinks")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    path: str
    follow_symlinks: bool
    def __init__(self, path: _Optional[str] = ..., follow_symlinks: _Optional[bool] = ...) -> None: ...

class InodeReply(_message.Message):
    __slots__ = ("inode", "path")
    INODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    inode: _types_pb2.Inode
    path: str
    def __init__(self, inode: _Optional[_Union[_types_pb2.Inode, _Mapping]] = ..., path: _Optional[str] = ...) -> None: ...

class BatchStatRequest(_message.Message):
    __slots__ = ("paths", "follow_symlinks", "inline_ok", "attrs_only")
    PATHS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    INLINE_OK_FIELD_NUMBER: _ClassVar[int]
    ATTRS_ONLY_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedScalarFieldContainer[str]
    follow_symlinks: bool
    inline_ok: bool
    attrs_only: bool
    def __init__(self, paths: _Optional[_Iterable[str]] = ..., follow_symlinks: _Optional[bool] = ..., inline_ok: _Optional[bool] = ..., attrs_only: _Optional[bool] = ...) -> None: ...

class StatResult(_message.Message):
    __slots__ = ("inode", "error", "message", "inline_data", "path", "capability")
    INODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    inode: _types_pb2.Inode
    error: str
    message: str
    inline_data: bytes
    path: str
    capability: bytes
    def __init__(self, inode: _Optional[_Union[_types_pb2.Inode, _Mapping]] = ..., error: _Optional[str] = ..., message: _Optional[str] = ..., inline_data: _Optional[bytes] = ..., path: _Optional[str] = ..., capability: _Optional[bytes] = ...) -> None: ...

class BatchCreateRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CreateRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[CreateRequest, _Mapping]]] = ...) -> None: ...

class CreateResult(_message.Message):
    __slots__ = ("reply", "error", "message")
    REPLY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reply: OpenReply
    error: str
    message: str
    def __init__(self, reply: _Optional[_Union[OpenReply, _Mapping]] = ..., error: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class BatchCreateReply(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CreateResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CreateResult, _Mapping]]] = ...) -> None: ...

class BatchStatReply(_message.Message):
    __slots__ = ("results", "more")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StatResult]
    more: bool
    def __init__(self, results: _Optional[_Iterable[_Union[StatResult, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class MkdirsRequest(_message.Message):
    __slots__ = ("path", "mode", "parents", "exist_ok", "layout", "request_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    EXIST_OK_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    mode: int
    parents: bool
    exist_ok: bool
    layout: _types_pb2.Layout
    request_id: str
    def __init__(self, path: _Optional[str] = ..., mode: _Optional[int] = ..., parents: _Optional[bool] = ..., exist_ok: _Optional[bool] = ..., layout: _Optional[_Union[_types_pb2.Layout, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("path", "mode", "exclusive", "truncate", "parents", "open_for_write", "client_id", "layout", "request_id", "inline_data", "inline")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FOR_WRITE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    path: str
    mode: int
    exclusive: bool
    truncate: bool
    parents: bool
    open_for_write: bool
    client_id: str
    layout: _types_pb2.Layout
    request_id: str
    inline_data: bytes
    inline: bool
    def __init__(self, path: _Optional[str] = ..., mode: _Optional[int] = ..., exclusive: _Optional[bool] = ..., truncate: _Optional[bool] = ..., parents: _Optional[bool] = ..., open_for_write: _Optional[bool] = ..., client_id: _Optional[str] = ..., layout: _Optional[_Union[_types_pb2.Layout, _Mapping]] = ..., request_id: _Optional[str] = ..., inline_data: _Optional[bytes] = ..., inline: _Optional[bool] = ...) -> None: ...

class OpenRequest(_message.Message):
    __slots__ = ("path", "write", "truncate", "client_id", "request_id", "inline_ok")
    PATH_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INLINE_OK_FIELD_NUMBER: _ClassVar[int]
    path: str
    write: bool
    truncate: bool
    client_id: str
    request_id: str
    inline_ok: bool
    def __init__(self, path: _Optional[str] = ..., write: _Optional[bool] = ..., truncate: _Optional[bool] = ..., client_id: _Optional[str] = ..., request_id: _Optional[str] = ..., inline_ok: _Optional[bool] = ...) -> None: ...

class OpenReply(_message.Message):
    __slots__ = ("inode", "session_id", "path", "inline", "inline_data", "session_lease_ms", "capability")
    INODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    SESSION_LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    inode: _types_pb2.Inode
    session_id: int
    path: str
    inline: bool
    inline_data: bytes
    session_lease_ms: int
    capability: bytes
    def __init__(self, inode: _Optional[_Union[_types_pb2.Inode, _Mapping]] = ..., session_id: _Optional[int] = ..., path: _Optional[str] = ..., inline: _Optional[bool] = ..., inline_data: _Optional[bytes] = ..., session_lease_ms: _Optional[int] = ..., capability: _Optional[bytes] = ...) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ("inode_id", "session_id", "length_hint", "update_mtime", "request_id", "client_id")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_HINT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MTIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    session_id: int
    length_hint: int
    update_mtime: bool
    request_id: str
    client_id: str
    def __init__(self, inode_id: _Optional[int] = ..., session_id: _Optional[int] = ..., length_hint: _Optional[int] = ..., update_mtime: _Optional[bool] = ..., request_id: _Optional[str] = ..., client_id: _Optional[str] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("inode_id", "length_hint", "update_mtime", "session_id", "client_id")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_HINT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MTIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    length_hint: int
    update_mtime: bool
    session_id: int
    client_id: str
    def __init__(self, inode_id: _Optional[int] = ..., length_hint: _Optional[int] = ..., update_mtime: _Optional[bool] = ..., session_id: _Optional[int] = ..., client_id: _Optional[str] = ...) -> None: ...

class RenewSessionsRequest(_message.Message):
    __slots__ = ("client_id", "sessions")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    sessions: _containers.RepeatedCompositeFieldContainer[SessionRef]
    def __init__(self, client_id: _Optional[str] = ..., sessions: _Optional[_Iterable[_Union[SessionRef, _Mapping]]] = ...) -> None: ...

class SessionRef(_message.Message):
    __slots__ = ("inode_id", "session_id")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    session_id: int
    def __init__(self, inode_id: _Optional[int] = ..., session_id: _Optional[int] = ...) -> None: ...

class RenewSessionsReply(_message.Message):
    __slots__ = ("gone", "lease_ms")
    GONE_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    gone: _containers.RepeatedCompositeFieldContainer[SessionRef]
    lease_ms: int
    def __init__(self, gone: _Optional[_Iterable[_Union[SessionRef, _Mapping]]] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("path", "start_after", "limit", "with_attrs")
    PATH_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WITH_ATTRS_FIELD_NUMBER: _ClassVar[int]
    path: str
    start_after: str
    limit: int
    with_attrs: bool
    def __init__(self, path: _Optional[str] = ..., start_after: _Optional[str] = ..., limit: _Optional[int] = ..., with_attrs: _Optional[bool] = ...) -> None: ...

class DirEntry(_message.Message):
    __slots__ = ("name", "type", "inode_id", "inode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: _types_pb2.InodeType
    inode_id: int
    inode: _types_pb2.Inode
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[_types_pb2.InodeType, str]] = ..., inode_id: _Optional[int] = ..., inode: _Optional[_Union[_types_pb2.Inode, _Mapping]] = ...) -> None: ...

class ListReply(_message.Message):
    __slots__ = ("entries", "more")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DirEntry]
    more: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[DirEntry, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class FindRequest(_message.Message):
    __slots__ = ("path", "maxdepth", "withdirs", "limit", "start_after")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MAXDEPTH_FIELD_NUMBER: _ClassVar[int]
    WITHDIRS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    path: str
    maxdepth: int
    withdirs: bool
    limit: int
    start_after: str
    def __init__(self, path: _Optional[str] = ..., maxdepth: _Optional[int] = ..., withdirs: _Optional[bool] = ..., limit: _Optional[int] = ..., start_after: _Optional[str] = ...) -> None: ...

class FoundEntry(_message.Message):
    __slots__ = ("path", "inode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    inode: _types_pb2.Inode
    def __init__(self, path: _Optional[str] = ..., inode: _Optional[_Union[_types_pb2.Inode, _Mapping]] = ...) -> None: ...

class FindReply(_message.Message):
    __slots__ = ("entries", "more")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[FoundEntry]
    more: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[FoundEntry, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class RenameRequest(_message.Message):
    __slots__ = ("src", "dst", "no_replace", "request_id")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    NO_REPLACE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    no_replace: bool
    request_id: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., no_replace: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveRequest(_message.Message):
    __slots__ = ("path", "recursive", "directory_only", "file_only", "request_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_ONLY_FIELD_NUMBER: _ClassVar[int]
    FILE_ONLY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    recursive: bool
    directory_only: bool
    file_only: bool
    request_id: str
    def __init__(self, path: _Optional[str] = ..., recursive: _Optional[bool] = ..., directory_only: _Optional[bool] = ..., file_only: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class SymlinkRequest(_message.Message):
    __slots__ = ("path", "target", "request_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    target: str
    request_id: str
    def __init__(self, path: _Optional[str] = ..., target: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReadLinkRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class ReadLinkReply(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class HardLinkRequest(_message.Message):
    __slots__ = ("src", "dst", "request_id")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    request_id: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetAttrRequest(_message.Message):
    __slots__ = ("path", "follow_symlinks", "mode", "uid", "gid", "mtime_ns", "atime_ns", "request_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_SYMLINKS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    follow_symlinks: bool
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    request_id: str
    def __init__(self, path: _Optional[str] = ..., follow_symlinks: _Optional[bool] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., atime_ns: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class TruncateRequest(_message.Message):
    __slots__ = ("path", "length", "request_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    length: int
    request_id: str
    def __init__(self, path: _Optional[str] = ..., length: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class StatFsReply(_message.Message):
    __slots__ = ("capacity_bytes", "used_bytes", "free_bytes", "inodes", "gc_pending", "next_inode_id", "meta_map_used_bytes", "meta_map_bytes_max", "meta_warning")
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    INODES_FIELD_NUMBER: _ClassVar[int]
    GC_PENDING_FIELD_NUMBER: _ClassVar[int]
    NEXT_INODE_ID_FIELD_NUMBER: _ClassVar[int]
    META_MAP_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    META_MAP_BYTES_MAX_FIELD_NUMBER: _ClassVar[int]
    META_WARNING_FIELD_NUMBER: _ClassVar[int]
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    inodes: int
    gc_pending: int
    next_inode_id: int
    meta_map_used_bytes: int
    meta_map_bytes_max: int
    meta_warning: str
    def __init__(self, capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., inodes: _Optional[int] = ..., gc_pending: _Optional[int] = ..., next_inode_id: _Optional[int] = ..., meta_map_used_bytes: _Optional[int] = ..., meta_map_bytes_max: _Optional[int] = ..., meta_warning: _Optional[str] = ...) -> None: ...

class CopyFileRequest(_message.Message):
    __slots__ = ("src", "dst", "parents", "request_id")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    parents: bool
    request_id: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., parents: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class FileSession(_message.Message):
    __slots__ = ("inode_id", "session_id", "client_id", "created_ns", "truncate_version")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    session_id: int
    client_id: str
    created_ns: int
    truncate_version: int
    def __init__(self, inode_id: _Optional[int] = ..., session_id: _Optional[int] = ..., client_id: _Optional[str] = ..., created_ns: _Optional[int] = ..., truncate_version: _Optional[int] = ...) -> None: ...

class StatInodesRequest(_message.Message):
    __slots__ = ("inode_ids",)
    INODE_IDS_FIELD_NUMBER: _ClassVar[int]
    inode_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, inode_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class InodeState(_message.Message):
    __slots__ = ("inode_id", "exists", "gc_pending", "chunk_size")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    GC_PENDING_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    exists: bool
    gc_pending: bool
    chunk_size: int
    def __init__(self, inode_id: _Optional[int] = ..., exists: _Optional[bool] = ..., gc_pending: _Optional[bool] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class StatInodesReply(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[InodeState]
    def __init__(self, states: _Optional[_Iterable[_Union[InodeState, _Mapping]]] = ...) -> None: ...

class IdemRecord(_message.Message):
    __slots__ = ("method", "created_ns", "reply", "error", "message")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    method: str
    created_ns: int
    reply: bytes
    error: str
    message: str
    def __init__(self, method: _Optional[str] = ..., created_ns: _Optional[int] = ..., reply: _Optional[bytes] = ..., error: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "name", "uid", "gids", "admin", "token_hash", "created_ns")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GIDS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    uid: int
    gids: _containers.RepeatedScalarFieldContainer[int]
    admin: bool
    token_hash: bytes
    created_ns: int
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., uid: _Optional[int] = ..., gids: _Optional[_Iterable[int]] = ..., admin: _Optional[bool] = ..., token_hash: _Optional[bytes] = ..., created_ns: _Optional[int] = ...) -> None: ...

class UserAddRequest(_message.Message):
    __slots__ = ("name", "uid", "gids", "admin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GIDS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: int
    gids: _containers.RepeatedScalarFieldContainer[int]
    admin: bool
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[int] = ..., gids: _Optional[_Iterable[int]] = ..., admin: _Optional[bool] = ...) -> None: ...

class UserNameRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UserTokenReply(_message.Message):
    __slots__ = ("user", "token")
    USER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: User
    token: str
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class UserListReply(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class WhoAmIReply(_message.Message):
    __slots__ = ("user", "node_id")
    USER_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    user: User
    node_id: int
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., node_id: _Optional[int] = ...) -> None: ...

class GetCapabilityRequest(_message.Message):
    __slots__ = ("inode_id", "write", "previous")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    write: bool
    previous: bytes
    def __init__(self, inode_id: _Optional[int] = ..., write: _Optional[bool] = ..., previous: _Optional[bytes] = ...) -> None: ...

class GetCapabilityReply(_message.Message):
    __slots__ = ("capability",)
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    capability: bytes
    def __init__(self, capability: _Optional[bytes] = ...) -> None: ...

class NodeKeyRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    def __init__(self, node_id: _Optional[int] = ...) -> None: ...

class NodeKeyReply(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...
