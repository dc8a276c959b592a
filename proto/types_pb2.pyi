from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InodeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INODE_TYPE_UNSPECIFIED: _ClassVar[InodeType]
    INODE_FILE: _ClassVar[InodeType]
    INODE_DIRECTORY: _ClassVar[InodeType]
    INODE_SYMLINK: _ClassVar[InodeType]

class PublicTargetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUBLIC_STATE_UNSPECIFIED: _ClassVar[PublicTargetState]
    SERVING: _ClassVar[PublicTargetState]
    SYNCING: _ClassVar[PublicTargetState]
    WAITING: _ClassVar[PublicTargetState]
    LASTSRV: _ClassVar[PublicTargetState]
    OFFLINE: _ClassVar[PublicTargetState]

class LocalTargetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCAL_STATE_UNSPECIFIED: _ClassVar[LocalTargetState]
    UPTODATE: _ClassVar[LocalTargetState]
    ONLINE: _ClassVar[LocalTargetState]
    LOCAL_OFFLINE: _ClassVar[LocalTargetState]

class NodeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_TYPE_UNSPECIFIED: _ClassVar[NodeType]
    NODE_META: _ClassVar[NodeType]
    NODE_STORAGE: _ClassVar[NodeType]
    NODE_CLIENT: _ClassVar[NodeType]

class NodeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATUS_UNSPECIFIED: _ClassVar[NodeStatus]
    HEARTBEAT_CONNECTED: _ClassVar[NodeStatus]
    HEARTBEAT_FAILED: _ClassVar[NodeStatus]
    DISABLED: _ClassVar[NodeStatus]
INODE_TYPE_UNSPECIFIED: InodeType
INODE_FILE: InodeType
INODE_DIRECTORY: InodeType
INODE_SYMLINK: InodeType
PUBLIC_STATE_UNSPECIFIED: PublicTargetState
SERVING: PublicTargetState
SYNCING: PublicTargetState
WAITING: PublicTargetState
LASTSRV: PublicTargetState
OFFLINE: PublicTargetState
LOCAL_STATE_UNSPECIFIED: LocalTargetState
UPTODATE: LocalTargetState
ONLINE: LocalTargetState
LOCAL_OFFLINE: LocalTargetState
NODE_TYPE_UNSPECIFIED: NodeType
NODE_META: NodeType
NODE_STORAGE: NodeType
NODE_CLIENT: NodeType
NODE_STATUS_UNSPECIFIED: NodeStatus
HEARTBEAT_CONNECTED: NodeStatus
HEARTBEAT_FAILED: NodeStatus
DISABLED: NodeStatus

class Layout(_message.Message):
    __slots__ = ("chunk_size", "stripe_size", "chain_table_id", "chain_table_version", "chain_base", "seed")
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIPE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TABLE_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHAIN_BASE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    chunk_size: int
    stripe_size: int
    chain_table_id: int
    chain_table_version: int
    chain_base: int
    seed: int
    def __init__(self, chunk_size: _Optional[int] = ..., stripe_size: _Optional[int] = ..., chain_table_id: _Optional[int] = ..., chain_table_version: _Optional[int] = ..., chain_base: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class Inode(_message.Message):
    __slots__ = ("id", "type", "mode", "uid", "gid", "nlink", "length", "atime_ns", "mtime_ns", "ctime_ns", "crtime_ns", "layout", "parent", "symlink_target", "truncate_version", "open_write_sessions")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    NLINK_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CRTIME_NS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SYMLINK_TARGET_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPEN_WRITE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: InodeType
    mode: int
    uid: int
    gid: int
    nlink: int
    length: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    crtime_ns: int
    layout: Layout
    parent: int
    symlink_target: str
    truncate_version: int
    open_write_sessions: int
    def __init__(self, id: _Optional[int] = ..., type: _Optional[_Union[InodeType, str]] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., nlink: _Optional[int] = ..., length: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., ctime_ns: _Optional[int] = ..., crtime_ns: _Optional[int] = ..., layout: _Optional[_Union[Layout, _Mapping]] = ..., parent: _Optional[int] = ..., symlink_target: _Optional[str] = ..., truncate_version: _Optional[int] = ..., open_write_sessions: _Optional[int] = ...) -> None: ...

class ChunkId(_message.Message):
    __slots__ = ("inode", "index")
    INODE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    inode: int
    index: int
    def __init__(self, inode: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("id", "type", "address", "status", "last_heartbeat_ms", "hostname", "pid", "bulk_address", "metrics_address")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    BULK_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: NodeType
    address: str
    status: NodeStatus
    last_heartbeat_ms: int
    hostname: str
    pid: int
    bulk_address: str
    metrics_address: str
    def __init__(self, id: _Optional[int] = ..., type: _Optional[_Union[NodeType, str]] = ..., address: _Optional[str] = ..., status: _Optional[_Union[NodeStatus, str]] = ..., last_heartbeat_ms: _Optional[int] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., bulk_address: _Optional[str] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class TargetInfo(_message.Message):
    __slots__ = ("id", "node_id", "chain_id", "public_state", "local_state", "path", "used_bytes", "capacity_bytes", "chunk_count", "fs_id", "retired")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_STATE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STATE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    FS_ID_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    id: int
    node_id: int
    chain_id: int
    public_state: PublicTargetState
    local_state: LocalTargetState
    path: str
    used_bytes: int
    capacity_bytes: int
    chunk_count: int
    fs_id: str
    retired: bool
    def __init__(self, id: _Optional[int] = ..., node_id: _Optional[int] = ..., chain_id: _Optional[int] = ..., public_state: _Optional[_Union[PublicTargetState, str]] = ..., local_state: _Optional[_Union[LocalTargetState, str]] = ..., path: _Optional[str] = ..., used_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., chunk_count: _Optional[int] = ..., fs_id: _Optional[str] = ..., retired: _Optional[bool] = ...) -> None: ...

class ChainInfo(_message.Message):
    __slots__ = ("id", "version", "targets")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    id: int
    version: int
    targets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[int] = ..., version: _Optional[int] = ..., targets: _Optional[_Iterable[int]] = ...) -> None: ...

class ChainTable(_message.Message):
    __slots__ = ("id", "version", "chains", "replicas")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    id: int
    version: int
    chains: _containers.RepeatedScalarFieldContainer[int]
    replicas: int
    def __init__(self, id: _Optional[int] = ..., version: _Optional[int] = ..., chains: _Optional[_Iterable[int]] = ..., replicas: _Optional[int] = ...) -> None: ...

class RoutingInfo(_message.Message):
    __slots__ = ("version", "nodes", "targets", "chains", "chain_tables", "mgmtd_primary_id", "moves")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TABLES_FIELD_NUMBER: _ClassVar[int]
    MGMTD_PRIMARY_ID_FIELD_NUMBER: _ClassVar[int]
    MOVES_FIELD_NUMBER: _ClassVar[int]
    version: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    targets: _containers.RepeatedCompositeFieldContainer[TargetInfo]
    chains: _containers.RepeatedCompositeFieldContainer[ChainInfo]
    chain_tables: _containers.RepeatedCompositeFieldContainer[ChainTable]
    mgmtd_primary_id: int
    moves: _containers.RepeatedCompositeFieldContainer[ChainMove]
    def __init__(self, version: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., targets: _Optional[_Iterable[_Union[TargetInfo, _Mapping]]] = ..., chains: _Optional[_Iterable[_Union[ChainInfo, _Mapping]]] = ..., chain_tables: _Optional[_Iterable[_Union[ChainTable, _Mapping]]] = ..., mgmtd_primary_id: _Optional[int] = ..., moves: _Optional[_Iterable[_Union[ChainMove, _Mapping]]] = ...) -> None: ...

class ChainMove(_message.Message):
    __slots__ = ("chain_id", "from_target", "to_target", "phase", "reason")
    class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        QUEUED: _ClassVar[ChainMove.Phase]
        SYNCING: _ClassVar[ChainMove.Phase]
    QUEUED: ChainMove.Phase
    SYNCING: ChainMove.Phase
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TARGET_FIELD_NUMBER: _ClassVar[int]
    TO_TARGET_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    from_target: int
    to_target: int
    phase: ChainMove.Phase
    reason: str
    def __init__(self, chain_id: _Optional[int] = ..., from_target: _Optional[int] = ..., to_target: _Optional[int] = ..., phase: _Optional[_Union[ChainMove.Phase, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
