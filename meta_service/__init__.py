"""FireflyFS metadata service: the namespace and, in the same process, the cluster manager.

    store.py        LMDB environment, key layout, one writer (durability notes)
    resolve.py      path -> inode inside a transaction, symlinks followed
    layouts.py      directory default layouts, chain range + seed for new files
    inodes.py       inode/dentry/session record helpers shared by operations
    namespace.py    Namespace: stat, list, find, mkdirs, symlink, link, rename, remove, setattr
    files.py        create/open/close/sync (sessions, holders, length rule), truncate
    leases.py       write-session leases per client; the reaper that ends expired ones
    copy.py         server-side copy into an unlinked inode, linked at dst only when complete
    idempotency.py  request_id -> recorded outcome, written in the mutation's own transaction
    gc.py           background reclamation of unlinked files' chunks
    chunk_store.py  the storage interface meta needs, the lazy real one, the gate that bounds it
    replies.py      the byte budget that keeps listing replies under one message
    mgmtd/          cluster manager: ClusterState, chain table generator, servicer
    servicer.py     thin Meta gRPC servicer
    server.py       MetaConfig + MetaServer (both services on one port); __main__ runs it
"""
