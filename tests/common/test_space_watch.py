"""common.space_watch.FillWatch: one warning per crossing of the threshold, a note when back below.

Method: feed measurements of two resources up and down across 80% and count
the log records; the returned text is what SpaceInfo and StatFs show.
"""

from __future__ import annotations

import logging

import pytest

from fireflyfs.common.space_watch import FillWatch

log = logging.getLogger("test.space_watch")


def test_a_warning_is_logged_once_past_the_threshold_and_again_after_falling_back(caplog):
    watch = FillWatch(log, "target 101", warn_fraction=0.8)
    with caplog.at_level(logging.INFO, logger=log.name):
        assert watch.observe("space", 50, 100) == ""
        texts = [watch.observe("space", used, 100, "delete files") for used in (81, 90, 85, 99)]
        assert watch.observe("space", 40, 100) == ""
        watch.observe("space", 95, 100)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [texts[0], watch.warnings()[0]]
    assert texts[0] == "target 101: space 81% full (81 of 100 bytes, warning at 80%); delete files"
    assert all(texts)
    assert len([r for r in caplog.records if r.levelno == logging.INFO and "back below" in r.getMessage()]) == 1


def test_resources_are_watched_apart():
    watch = FillWatch(log, "target 101", warn_fraction=0.5)
    watch.observe("space", 60, 100)
    watch.observe("chunk metadata map", 10, 100)
    assert len(watch.warnings()) == 1 and "space 60%" in watch.warnings()[0]
    watch.observe("chunk metadata map", 70, 100)
    assert len(watch.warnings()) == 2
    assert watch.observe("size unknown", 10, 0) == ""


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_a_threshold_outside_0_to_1_is_refused(fraction):
    with pytest.raises(ValueError):
        FillWatch(log, "x", warn_fraction=fraction)
