"""FireflyFS storage service: chunk targets replicated along CRAQ chains.

    chunk_engine.py  chunk files + LMDB metadata of one target; stage/commit of chain updates
    target.py        a target: engine, local state, chunk locks, client write dedup
    craq.py          the chain protocol as pure logic (ChainOp, ChainView, resync planning)
    chain_driver.py  runs ChainOps on the node: engine I/O, forwarding to successors, retries
    chunk_locks.py   per-chunk locks held for a whole update; updates in flight (resync drain)
    resync.py        predecessor of a SYNCING target copies what it lacks, then SyncDone
    rollforward.py   heads complete updates a failure left pending
    local_state.py   ONLINE/UPTODATE reported in heartbeats
    fencing.py       stop serving after half the heartbeat timeout without mgmtd contact
    routing_view.py  the node's routing: chains, public states, peer addresses, fences
    peers.py         gRPC stubs to other storage nodes
    heartbeat.py     registration (with incarnation) and heartbeats to mgmtd
    servicer.py      thin Storage gRPC servicer
    server.py        StorageConfig + StorageNode; __main__ runs it
"""
