"""Thin gRPC shell over Namespace (service ``Meta``): parse, call, wrap the reply.

Mutations pass the request's ``request_id`` through: Namespace records the
outcome with the mutation, so a client retrying after a lost reply (or a meta
restart) gets the first answer back (idempotency.py).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from fireflyfs.common import auth, limits
from fireflyfs.common.errors import FfsError, InvalidArgument, TooLarge, error_name
from fireflyfs.common.rpc import map_servicer_errors
from fireflyfs.proto import meta_pb2, meta_pb2_grpc, types_pb2

from .capabilities import CapabilityIssuer
from .mgmtd.cluster import ClusterState
from .namespace import Namespace
from .space_check import MetaSpaceCheck
from .users import Users

log = logging.getLogger(__name__)


def _optional(request, field: str):
    return getattr(request, field) if request.HasField(field) else None


def _holder(client_id: str) -> str:
    """The client id a write session is opened, renewed, closed or synced by: never empty."""
    if not client_id:
        raise InvalidArgument("write sessions need a client_id: the client that holds them and renews "
                              "their lease")
    return client_id


@map_servicer_errors
class MetaServicer(meta_pb2_grpc.MetaServicer):
    def __init__(self, namespace: Namespace, cluster: ClusterState,
                 space_check: MetaSpaceCheck | None = None, users: Users | None = None,
                 cluster_secret: bytes = b"", capabilities: CapabilityIssuer | None = None) -> None:
        self.capabilities = capabilities or CapabilityIssuer(cluster_secret)
        self.ns = namespace
        self.cluster = cluster
        self.space_check = space_check
        self.users = users or Users(namespace.store)
        self._cluster_secret = cluster_secret
        # BatchCreate's creates run side by side, so their durable commits share fdatasyncs
        # (group commit, common/lmdb_commit.py) instead of paying one each, in turn.
        self._create_pool = ThreadPoolExecutor(limits.batch_create_concurrent_max,
                                               thread_name_prefix="batch-create")

    @staticmethod
    def _inode_reply(result) -> meta_pb2.InodeReply:
        inode, path = result
        return meta_pb2.InodeReply(inode=inode, path=path)

    def _open_reply(self, result, write: bool = False) -> meta_pb2.OpenReply:
        inode, session_id, path = result
        return meta_pb2.OpenReply(inode=inode, session_id=session_id, path=path,
                                  session_lease_ms=self.ns.leases.lease_ms if session_id else 0,
                                  capability=self.capabilities.issue(inode.id, write or bool(session_id)))

    def Stat(self, request, context):
        return self._inode_reply(self.ns.stat(request.path, request.follow_symlinks))

    def BatchStat(self, request, context):
        results, more = self.ns.batch_stat(list(request.paths), request.follow_symlinks, request.inline_ok,
                                           request.attrs_only)
        if not request.attrs_only:      # read handles: namespace checked read permission on each file
            for result in results:
                if not result.error and result.inode.type == types_pb2.INODE_FILE:
                    result.capability = self.capabilities.issue(result.inode.id, False)
        return meta_pb2.BatchStatReply(results=results, more=more)

    def Mkdirs(self, request, context):
        return self._inode_reply(self.ns.mkdirs(
            request.path, time.time_ns(), mode=request.mode, parents=request.parents,
            exist_ok=request.exist_ok, layout=_optional(request, "layout"), request_id=request.request_id))

    def Create(self, request, context):
        return self._create(request)

    def BatchCreate(self, request, context):
        """Each create on its own (own transaction, request_id and outcome), results in request order.

        The creates run concurrently, as the separate Create calls the client's
        coalescer merged would have (they come from different threads: none waits
        for another), so their commits share fdatasyncs.
        """
        if len(request.requests) > limits.batch_create_requests_max:
            raise TooLarge(f"{len(request.requests)} creates in one BatchCreate; "
                           f"at most {limits.batch_create_requests_max}")
        return meta_pb2.BatchCreateReply(results=list(self._create_pool.map(self._create_result,
                                                                            request.requests)))

    def _create_result(self, create) -> meta_pb2.CreateResult:
        try:
            return meta_pb2.CreateResult(reply=self._create(create))
        except FfsError as exc:
            return meta_pb2.CreateResult(error=error_name(exc), message=str(exc))

    def _create(self, request) -> meta_pb2.OpenReply:
        if request.inline:
            inode, path, inline = self.ns.create_inline(
                request.path, request.inline_data, time.time_ns(), mode=request.mode,
                exclusive=request.exclusive, parents=request.parents, layout=_optional(request, "layout"),
                request_id=request.request_id)
            return meta_pb2.OpenReply(inode=inode, path=path, inline=inline,
                                      capability=self.capabilities.issue(inode.id, True) if inode is not None else b"")
        return self._open_reply(self.ns.create(
            request.path, time.time_ns(), mode=request.mode, exclusive=request.exclusive,
            truncate=request.truncate, parents=request.parents, open_for_write=request.open_for_write,
            client_id=_holder(request.client_id) if request.open_for_write else request.client_id, layout=_optional(request, "layout"), request_id=request.request_id))

    def Open(self, request, context):
        if request.inline_ok and not (request.write or request.truncate):
            inode, path, data = self.ns.open_inline(request.path)
            return meta_pb2.OpenReply(inode=inode, path=path, inline=bool(data), inline_data=data,
                                      capability=self.capabilities.issue(inode.id, False))
        return self._open_reply(self.ns.open(
            request.path, time.time_ns(), write=request.write, truncate=request.truncate,
            client_id=_holder(request.client_id) if request.write else request.client_id,
            request_id=request.request_id), write=request.write or request.truncate)

    def Close(self, request, context):
        inode = self.ns.close(request.inode_id, request.session_id, time.time_ns(),
                              length_hint=request.length_hint, update_mtime=request.update_mtime,
                              request_id=request.request_id, client_id=_holder(request.client_id))
        return meta_pb2.InodeReply(inode=inode)

    def Sync(self, request, context):
        inode = self.ns.sync(request.inode_id, request.session_id, time.time_ns(),
                             length_hint=request.length_hint, update_mtime=request.update_mtime,
                             client_id=_holder(request.client_id))
        return meta_pb2.InodeReply(inode=inode)

    def RenewSessions(self, request, context):
        gone = self.ns.renew_sessions(_holder(request.client_id),
                                      [(ref.inode_id, ref.session_id) for ref in request.sessions])
        return meta_pb2.RenewSessionsReply(
            gone=[meta_pb2.SessionRef(inode_id=inode_id, session_id=session_id) for inode_id, session_id in gone],
            lease_ms=self.ns.leases.lease_ms)

    def List(self, request, context):
        entries, more = self.ns.list(request.path, request.start_after, request.limit, request.with_attrs)
        return meta_pb2.ListReply(entries=entries, more=more)

    def Find(self, request, context):
        entries, more = self.ns.find(request.path, request.maxdepth, request.withdirs, request.limit,
                                     request.start_after)
        return meta_pb2.FindReply(entries=entries, more=more)

    def Rename(self, request, context):
        self.ns.rename(request.src, request.dst, time.time_ns(), no_replace=request.no_replace,
                       request_id=request.request_id)
        return types_pb2.Empty()

    def Remove(self, request, context):
        self.ns.remove(request.path, time.time_ns(), recursive=request.recursive,
                       directory_only=request.directory_only, file_only=request.file_only,
                       request_id=request.request_id)
        return types_pb2.Empty()

    def Symlink(self, request, context):
        return self._inode_reply(self.ns.symlink(request.path, request.target, time.time_ns(),
                                                 request_id=request.request_id))

    def ReadLink(self, request, context):
        return meta_pb2.ReadLinkReply(target=self.ns.readlink(request.path))

    def HardLink(self, request, context):
        return self._inode_reply(self.ns.hardlink(request.src, request.dst, time.time_ns(),
                                                  request_id=request.request_id))

    def SetAttr(self, request, context):
        return self._inode_reply(self.ns.setattr(
            request.path, time.time_ns(), follow_symlinks=request.follow_symlinks,
            mode=_optional(request, "mode"), uid=_optional(request, "uid"), gid=_optional(request, "gid"),
            mtime_ns=_optional(request, "mtime_ns"), atime_ns=_optional(request, "atime_ns"),
            request_id=request.request_id))

    def Truncate(self, request, context):
        return self._inode_reply(self.ns.truncate(request.path, request.length, time.time_ns(),
                                                  request_id=request.request_id))

    def StatFs(self, request, context):
        reply = self.ns.statfs()
        capacity, used = self.cluster.capacity(time.time_ns() // 1_000_000)
        reply.capacity_bytes, reply.used_bytes = capacity, used
        reply.free_bytes = max(0, capacity - used)
        if self.space_check is not None:
            usage = self.space_check.store.map_usage()
            reply.meta_map_used_bytes, reply.meta_map_bytes_max = usage.used_bytes, usage.map_bytes_max
            reply.meta_warning = self.space_check.warning()
        return reply

    def CopyFile(self, request, context):
        return self._inode_reply(self.ns.copy_file(request.src, request.dst, time.time_ns(),
                                                   parents=request.parents, request_id=request.request_id))

    def StatInodes(self, request, context):
        return meta_pb2.StatInodesReply(states=self.ns.stat_inodes(list(request.inode_ids)))

    # -- users and node keys -------------------------------------------------
    def UserAdd(self, request, context):
        auth.require_admin("adding a user")
        user, token = self.users.add(request.name, time.time_ns(), uid=_optional(request, "uid"),
                                     gids=list(request.gids), admin=request.admin)
        log.info("user %r added (uid %d, admin %s) by %s", user.name, user.uid, user.admin,
                 auth.caller().describe())
        return meta_pb2.UserTokenReply(user=user, token=token)

    def UserList(self, request, context):
        auth.require_admin("listing users")
        return meta_pb2.UserListReply(users=self.users.list())

    def UserRemove(self, request, context):
        auth.require_admin("removing a user")
        self.users.remove(request.name)
        log.info("user %r removed by %s", request.name, auth.caller().describe())
        return types_pb2.Empty()

    def UserRotateToken(self, request, context):
        auth.require_admin("rotating a user's token")
        user, token = self.users.rotate(request.name)
        log.info("token of user %r rotated by %s", user.name, auth.caller().describe())
        return meta_pb2.UserTokenReply(user=user, token=token)

    def WhoAmI(self, request, context):
        principal = auth.caller()
        user = meta_pb2.User(name=principal.name, uid=principal.uid, gids=list(principal.gids),
                             admin=principal.admin)
        return meta_pb2.WhoAmIReply(user=None if principal.is_node else user, node_id=principal.node_id)

    def GetCapability(self, request, context):
        """A fresh capability for a file the caller may read or write (by its mode, owner and group)."""
        if not auth.caller().superuser:      # admin tools (fsck): any inode, removed ones included
            self.capabilities.require_held(request.inode_id, request.previous)
            self.ns.inode_for_capability(request.inode_id, request.write)
        return meta_pb2.GetCapabilityReply(capability=self.capabilities.issue(request.inode_id, request.write))

    def NodeKey(self, request, context):
        """The key node node_id presents (its storage config's node_key_file): admins only."""
        auth.require_admin("issuing a node key")
        if request.node_id == 0:
            raise InvalidArgument("node ids start at 1")
        if not self._cluster_secret:
            raise InvalidArgument("this meta server has no cluster secret")
        log.info("key of node %d issued to %s", request.node_id, auth.caller().describe())
        return meta_pb2.NodeKeyReply(token=auth.node_token(self._cluster_secret, request.node_id))
