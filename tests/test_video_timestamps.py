"""The timestamp repair rules of :mod:`gfpgan.inference.video.timestamps`, one by one, on stamp
lists shaped like the broken files they come from (no video needed)."""

from __future__ import annotations

import numpy as np
import pytest

from gfpgan.inference.video.timestamps import repair_stamps

N = None


def _repair(pts, dts=None, durations=None, step=40):
    dts = [N] * len(pts) if dts is None else dts
    return repair_stamps(pts, dts, durations or [0] * len(pts), step)


def test_sound_stamps_are_kept_as_they_are():
    st = _repair([0, 40, 80, 120], [-40, 0, 40, 80])
    assert st.pts.tolist() == [0, 40, 80, 120] and st.repaired == 0 and st.source == "pts"
    assert st.note() == ""


def test_rule1_the_decode_stamps_win_when_the_pts_have_more_faults():
    """Packed B-frame AVI: pts missing on some frames, dts complete and increasing."""
    pts = [0, N, 80, N, 160, 200]
    dts = [0, 40, 80, 120, 160, 200]
    st = _repair(pts, dts)
    assert st.source == "dts" and st.pts.tolist() == dts and st.repaired == 2
    assert st.note() == ("timestamps repaired on 2 of 6 frame(s) (presentation stamps missing or "
                         "out of order, decode-order stamps used)")
    # with as many faults on both sides, the pts are kept (FFmpeg's tie goes to pts too)
    assert _repair([0, 0, 80], [0, 40, 40]).source == "pts"


def test_rule2_a_permutation_of_even_stamps_is_sorted():
    """Display-order frames carrying decode-order stamps: complete, unique, wrong order."""
    st = _repair([0, 120, 40, 80, 240, 160, 200])
    assert st.pts.tolist() == [0, 40, 80, 120, 160, 200, 240]
    assert st.repaired == 6 and st.source == "pts"


def test_rule2_not_for_an_outlier_then_rule3_keeps_the_increasing_run():
    """One stamp far off (more than 4 median steps) is an outlier, not a reordering."""
    st = _repair([0, 40, 80, 5000, 160, 200])
    assert st.pts.tolist() == [0, 40, 80, 120, 160, 200] and st.repaired == 1


def test_rule3_repeated_and_missing_stamps_are_spread_between_kept_neighbours():
    st = _repair([0, 40, 40, N, 160, 200, 200, 200, 320])
    # kept: 0, 160 and 320; a stamp two frames carry (40, 200) belongs to neither for sure
    assert st.pts.tolist() == [0, 40, 80, 120, 160, 200, 240, 280, 320]
    assert st.repaired == 4 and st.source == "pts"  # frames 2, 3, 6 and 7
    # a stamp going backwards is left out of the kept run (one missing: not a reordering)
    assert _repair([0, 40, 80, 20, 160, N, 240]).pts.tolist() == [0, 40, 80, 120, 160, 200, 240]
    # every frame the same stamp: it is kept once, the others follow one step apart
    assert _repair([70, 70, 70]).pts.tolist() == [70, 110, 150]
    assert np.all(np.diff(st.pts) > 0)
    assert "stamps missing, repeated or out of order" in st.note()


def test_rule3_before_the_first_and_after_the_last_one_duration_apart():
    # frame durations where the stream gives them, the nominal step elsewhere
    st = _repair([N, N, 100, 140, N, N], durations=[30, 30, 40, 40, 25, 0], step=40)
    assert st.pts.tolist() == [40, 70, 100, 140, 180, 205]
    st = _repair([N, 0, 50, N], step=50)
    assert st.pts.tolist() == [-50, 0, 50, 100]


def test_no_stamps_at_all_are_counted_at_the_frame_rate():
    st = _repair([N] * 4, [N] * 4, step=48000)
    assert st.source == "counted" and st.pts.tolist() == [0, 48000, 96000, 144000]
    assert st.repaired == 4 and "frames numbered at its frame rate" in st.note()
    assert st.keys is None and st.seek is None  # nothing to find a frame by after a seek


def test_keys_and_seek_targets_find_frames_after_a_seek():
    pts = [1, 4, 2, 3, 7, 5, 6]
    dts = [0, 1, 2, 3, 4, 5, 6]
    st = _repair(pts, dts)
    assert st.keys == {(p, d): i for i, (p, d) in enumerate(zip(pts, dts))}
    # a seek target never lies after an earlier frame's (the demuxer seeks by dts here)
    assert st.seek.tolist() == [0, 1, 2, 3, 4, 5, 6]
    st = _repair([0, 40, 40, 120], [0, 40, 40, 120])  # (pts, dts) repeated: not unique
    assert st.keys is None and st.seek is None
    st = _repair([3, 1, 2], [N, N, N])  # dts missing: the pts themselves, never increasing later
    assert st.seek.tolist() == [1, 1, 2]


@pytest.mark.parametrize("seed", range(20))
def test_random_damage_always_gives_strictly_increasing_stamps(seed):
    """Whatever the damage, one stamp per decoded frame, strictly increasing, the sound ones
    kept where no reordering was detected."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    pts = [int(40 * k) for k in range(n)]
    broken = list(pts)
    for i in rng.choice(n, size=int(rng.integers(1, max(2, n // 3))), replace=False):
        broken[i] = [N, broken[max(0, i - 1)], int(rng.integers(0, 40 * n))][int(rng.integers(3))]
    st = _repair(broken)
    assert len(st.pts) == n and np.all(np.diff(st.pts) > 0)
    assert st.repaired == sum(a != b for a, b in zip(broken, st.pts.tolist()))
