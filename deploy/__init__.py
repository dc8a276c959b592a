"""Running FireflyFS: a local cluster in one directory, and the namespace network testbed.

    local_cluster.py    LocalCluster: meta + storage processes under DIR (``ffs cluster``)
    testbed.py          hosts in network namespaces behind a shaped router (``ffs testbed``)
    testbed_shaping.py  the bottleneck's HTB classes matched on DSCP
    testbed_probe.py    bulk TCP sources and sinks for the testbed
    netns.py            ip(8)/tc(8) wrappers with a journal so ``down`` leaves nothing behind
    demo.sh, test.sh    the README's two commands
"""
