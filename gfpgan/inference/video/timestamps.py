"""Frame timestamps as FFmpeg's player shows them, repaired where a file's own are broken.

Most files give every frame a presentation timestamp (``pts``) that the demuxer already knows,
so the frame table is read from packets without decoding (:func:`gfpgan.inference.video
.probe_video`). Some do not: DivX/Xvid AVIs with packed B-frames hand out display-order frames
carrying decode-order stamps (some missing, some going backwards), raw elementary streams have no
stamps at all, a damaged file may repeat one. For those the whole stream is decoded once and each
frame gets a timestamp the way FFmpeg's ``best_effort_timestamp`` picks one:

1. the frames' ``pts`` when the pts of the stream are no more often missing or non-increasing
   than the decode stamps (``dts`` of the packet that returned the frame), else those ``dts``
   (FFmpeg's ``best_effort_timestamp`` makes the same choice);
2. complete, unique stamps that only come in the wrong order (display-order frames carrying
   decode-order stamps) are sorted: frame k gets the k-th smallest;
3. otherwise the longest increasing run of stamps is kept and the rest (missing, repeated, out
   of order) are spread evenly between their kept neighbours, or one frame duration apart
   before the first and after the last (the frame rate only where the stream gives no
   duration). A stamp that several frames carry belongs to none of them for sure: it is not
   kept (where every stamp is repeated, the first frame of each keeps it).

Frame count and order are always the decoder's; only the stamps are replaced. A frame is found
again after a seek by its raw ``(pts, dts)`` pair (unique in the files that need it), so segments
can still start at a key frame instead of decoding from the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["RepairedStamps", "repair_stamps"]

RawKey = Tuple[Optional[int], Optional[int]]


@dataclass
class RepairedStamps:
    """The repaired frame table of a stream.

    Attributes:
        pts: strictly increasing timestamps (stream time base), one per decoded frame.
        repaired: how many frames got a stamp other than their own ``pts``.
        source: ``"pts"``, ``"dts"`` or ``"counted"`` (no usable stamps: numbered frames).
        keys: raw ``(pts, dts)`` of each frame -> frame index, or None when not unique.
        seek: per frame, a raw timestamp to seek to (the demuxer's index uses these), or None.
    """

    pts: np.ndarray
    repaired: int
    source: str
    keys: Optional[Dict[RawKey, int]]
    seek: Optional[np.ndarray]

    def note(self) -> str:
        """One line for the user, or "" when nothing was repaired."""
        if not self.repaired:
            return ""
        why = {"dts": "presentation stamps missing or out of order, decode-order stamps used",
               "counted": "no timestamps in the stream, frames numbered at its frame rate",
               "pts": "stamps missing, repeated or out of order"}[self.source]
        return f"timestamps repaired on {self.repaired} of {len(self.pts)} frame(s) ({why})"


def _faults(stamps: Sequence[Optional[int]]) -> int:
    """Missing or non-increasing stamps (FFmpeg counts the same to pick pts or dts)."""
    bad, last = 0, None
    for t in stamps:
        if t is None or (last is not None and t <= last):
            bad += 1
        if t is not None:
            last = t
    return bad


def _sorted_if_permuted(stamps: Sequence[Optional[int]]) -> Optional[List[int]]:
    """The stamps sorted, when they are complete, unique and evenly spread once sorted: frames
    in display order carrying their decode-order stamps (else None)."""
    if any(t is None for t in stamps) or len(set(stamps)) != len(stamps):
        return None
    out = sorted(stamps)  # type: ignore[type-var]
    steps = np.diff(np.array(out, np.int64))
    if len(steps) and steps.max() > 4 * max(1, int(np.median(steps))):
        return None  # one stamp far off: an outlier, not a reordering
    return out


def _increasing_anchors(stamps: Sequence[Optional[int]]) -> List[int]:
    """Indices of the longest strictly increasing run of present stamps (patience sorting):
    the stamps to trust; the others are outliers (repeated, out of order) or missing."""
    tails: List[int] = []  # index of the smallest tail of an increasing run of each length
    prev = [-1] * len(stamps)
    for i, t in enumerate(stamps):
        if t is None:
            continue
        lo, hi = 0, len(tails)
        while lo < hi:
            mid = (lo + hi) // 2
            if stamps[tails[mid]] < t:  # type: ignore[operator]
                lo = mid + 1
            else:
                hi = mid
        prev[i] = tails[lo - 1] if lo else -1
        if lo == len(tails):
            tails.append(i)
        else:
            tails[lo] = i
    run, i = [], tails[-1] if tails else -1
    while i >= 0:
        run.append(i)
        i = prev[i]
    return run[::-1]


def _anchors(stamps: Sequence[Optional[int]]) -> List[int]:
    """The stamps to keep: the longest increasing run among the stamps only one frame carries
    (a repeated stamp cannot say which of its frames it belongs to); where every stamp is
    repeated, among the first frame of each."""
    first: Dict[int, int] = {}
    count: Dict[int, int] = {}
    for i, t in enumerate(stamps):
        if t is not None:
            first.setdefault(t, i)
            count[t] = count.get(t, 0) + 1
    unique = [t if t is not None and count[t] == 1 else None for t in stamps]
    firsts = [t if t is not None and first[t] == i else None for i, t in enumerate(stamps)]
    return _increasing_anchors(unique) or _increasing_anchors(firsts)


def _fill(stamps: Sequence[Optional[int]], anchors: List[int], durations: Sequence[int],
          step: int) -> List[int]:
    """Stamps at the anchors; between two anchors evenly spaced; before the first and after the
    last, one frame duration (or ``step``) apart."""
    n = len(stamps)
    out: List[Optional[int]] = [None] * n
    for i in anchors:
        out[i] = int(stamps[i])  # type: ignore[arg-type]
    if not anchors:
        return [k * step for k in range(n)]

    def dur(i: int) -> int:
        return int(durations[i]) if durations[i] and durations[i] > 0 else step
    for i in range(anchors[0] - 1, -1, -1):
        out[i] = out[i + 1] - dur(i)  # type: ignore[operator]
    for a, b in zip(anchors, anchors[1:]):
        for i in range(a + 1, b):
            out[i] = out[a] + (out[b] - out[a]) * (i - a) // (b - a)  # type: ignore[operator]
    for i in range(anchors[-1] + 1, n):
        out[i] = out[i - 1] + dur(i - 1)  # type: ignore[operator]
    return [int(t) for t in out]  # type: ignore[arg-type]


def repair_stamps(raw_pts: Sequence[Optional[int]], raw_dts: Sequence[Optional[int]],
                  durations: Sequence[int], step: int) -> RepairedStamps:
    """Give every decoded frame a strictly increasing timestamp.

    Args:
        raw_pts: each frame's ``pts`` as decoded (None when missing), in output order.
        raw_dts: each frame's packet ``dts`` (None when missing).
        durations: each frame's duration in the time base (0 when unknown).
        step: one frame at the stream's nominal rate, in the time base (>= 1).
    Returns:
        The :class:`RepairedStamps`.
    """
    n = len(raw_pts)
    step = max(1, int(step))
    fp, fd = _faults(raw_pts), _faults(raw_dts)
    if not any(t is not None for t in list(raw_pts) + list(raw_dts)):
        base, source = [None] * n, "counted"
    else:
        base, source = (list(raw_dts), "dts") if fd < fp else (list(raw_pts), "pts")
    out = None if source == "counted" else _sorted_if_permuted(base)
    if out is None and source != "counted" and fp and fd >= fp:
        out = _sorted_if_permuted(raw_dts)  # the pts are incomplete but the dts are a reordering
    if out is None:
        out = _fill(base, _anchors(base), durations, step)
    pts = np.array(out, np.int64)
    repaired = int(sum(1 for a, b in zip(raw_pts, out) if a != b))
    keys: Optional[Dict[RawKey, int]] = {}
    for i, k in enumerate(zip(raw_pts, raw_dts)):
        if k == (None, None) or k in keys:
            keys = None
            break
        keys[k] = i
    seek = None
    if keys is not None:
        seek = np.array([d if d is not None else p for p, d in zip(raw_pts, raw_dts)], np.int64)
        seek = np.minimum.accumulate(seek[::-1])[::-1]  # never seek past an earlier frame's stamp
    return RepairedStamps(pts, repaired, source, keys, seek)
