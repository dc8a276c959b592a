"""bench/replication_throughput.py in small: both replication factors write, the storage CPU of
each is counted, and reads run while a killed node resyncs."""

from __future__ import annotations

import json

from fireflyfs.bench import replication_throughput


def test_replication_throughput_reports_write_ratio_cpu_and_resync_reads(capsys):
    assert replication_throughput.main(["--write-size", "8MiB", "--read-size", "8MiB", "--resync-size", "64MiB",
                                        "--block", "1MiB", "--repeats", "1", "--read-seconds", "0.2",
                                        "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    write = result["write"]
    assert write["r1_mib_s_median"] > 0 and write["r3_mib_s_median"] > 0 and write["r3_over_r1"] > 0
    # Three copies cost storage CPU: more than one copy's, counted over the table's own processes.
    assert all(v > 0 for v in write["storage_cpu_s_per_gib_r1"] + write["storage_cpu_s_per_gib_r3"])
    assert write["storage_cpu_r3_over_r1"] > 1
    assert result["read"]["syncing_verified"] and result["read"]["reads_during_resync"] > 0
