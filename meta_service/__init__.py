"""FireflyFS metadata service: the namespace and, in the same process, the cluster manager.

    store.py        LMDB environment, key layout, one writer (durability notes)
    resolve.py      path -> inode inside a transaction, symlinks followed
    layouts.py      directory default layouts, chain range + seed for new files
    inodes.py       inode/dentry/session record helpers shared by operations
    namespace.py    Namespace: stat, list, find, mkdirs, symlink, link, rename, remove, setattr
    files.py        create/open/close/sync (sessions, length rule), truncate
    copy.py         server-side copy into an unlinked inode, linked at dst only when complete
    idempotency.py  request_id -> recorded outcome, written in the mutation's own transaction
    gc.py           background reclamation of unlinked files' chunks
    chunk_store.py  the storage interface meta needs, and the lazy real one
    mgmtd/          cluster manager: ClusterState, chain table generator, servicer
    servicer.py     thin Meta gRPC servicer
    server.py       MetaConfig + MetaServer (both services on one port); __main__ runs it
"""
