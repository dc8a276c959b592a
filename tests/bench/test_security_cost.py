"""bench/security_cost.py in small: both modes run and report every phase and its ratio."""

from __future__ import annotations

import json

from fireflyfs.bench import security_cost


def test_security_cost_measures_both_modes(capsys):
    assert security_cost.main(["--size-mib", "8", "--seconds", "0.3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    phases = {"seq_write_mb_s", "seq_read_mb_s", "read_batch_4k_s", "info_s", "touch_s"}
    assert set(result["secure"]) == set(result["insecure"]) == set(result["secure_over_insecure"]) == phases
    assert all(value > 0 for mode in ("secure", "insecure") for value in result[mode].values())
