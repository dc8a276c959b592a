"""The cluster manager (mgmtd), hosted in the meta process.

    target_states.py  the 3FS target-state table as data, applied by a pure function (a pure core)
    chain_table.py    pure chain-table generator: replicas on distinct nodes, balanced peers
    chain_updater.py  one round of chain recomputation from heartbeats, persisted
    cluster.py        ClusterState: nodes, targets, chains, chain tables, routing version
    ticker.py         the periodic chain update on a background thread
    servicer.py       thin gRPC shell (service ``Mgmtd``)
"""
