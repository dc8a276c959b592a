"""Without the 'loaders' extra (no torch) the record format still works and the torch parts say
which extra to install."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
sys.modules["torch"] = None                # as if torch were not installed
import fireflyfs.loaders as loaders
assert loaders.RecordWriter and loaders.RecordReader
try:
    loaders.RecordDataset
except ModuleNotFoundError as exc:
    print(exc)
"""


def test_a_missing_torch_names_the_extra_and_leaves_the_record_format_usable():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'fireflyfs[loaders]'" in result.stdout
    assert "RecordDataset needs PyTorch" in result.stdout
