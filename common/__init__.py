"""What every layer shares; imports nothing else of FireflyFS.

    errors.py         the one error hierarchy (no gRPC: the pure cores raise these too)
    limits.py         every size and count limit, with import-time checks of their relations
    units.py          human byte sizes on command lines
    paths.py          canonical paths
    layout.py         file layout math: chunk -> chain (a pure core)
    traffic.py        traffic classes: the DSCP mark of every socket
    pacing.py         optional client-side token-bucket pacing per traffic class
    rpc.py            gRPC servers, channels, and the one mapping of errors to statuses and back
    fork_gate.py      a fork waits for the process's gRPC calls in flight (gRPC's fork handlers run)
    process_tuning.py malloc settings for processes that move large buffers
"""
