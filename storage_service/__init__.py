"""FireflyFS storage service: chunk targets replicated along CRAQ chains.

    chunk_engine.py  one target's chunks: writes, stage/commit of chain updates, verified reads
    chunk_meta.py    chunk keys and the per-chunk meta record (versions, length, block CRCs)
    chunk_files.py   chunk file writes and range copies; the pool of free chunk files
    fd_cache.py      read descriptors of chunk files kept open across reads
    target.py        a target: engine, local state, chunk locks, client write dedup
    craq.py          the chain protocol as pure logic (ChainOp, ChainView, resync planning)
    chain_driver.py  runs ChainOps on the node: engine I/O, forwarding to successors, retries
    chunk_locks.py   per-chunk locks held for a whole update; updates in flight (resync drain)
    resync.py        predecessor of a SYNCING target copies what it lacks, then SyncDone
    rollforward.py   heads complete updates a failure left pending
    repair.py        a rotten chunk re-verified and rewritten from a good replica (bounded queue)
    scrub.py         background re-verify of every committed chunk at a bounded rate
    local_state.py   ONLINE/UPTODATE reported in heartbeats
    fencing.py       stop serving after half the heartbeat timeout without mgmtd contact
    routing_view.py  the node's routing: chains, public states, peer addresses, fences
    peers.py         gRPC stubs to other storage nodes
    heartbeat.py     registration (with incarnation) and heartbeats to mgmtd
    servicer.py      thin Storage gRPC servicer
    bulk_server.py   the bulk listener: chunk bytes over proto/bulk_wire.py (sendfile reads)
    rts.py           request-to-send: a bulk read asks before its data goes out
    server.py        StorageConfig + StorageNode; __main__ runs it
"""
