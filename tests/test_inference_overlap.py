"""Overlapped stages: prefetch thread, in-order futures, and the video restorer run with them."""

import threading
import time
from concurrent.futures import Future

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from gfpgan.inference.job.segments import images
from gfpgan.inference.job.threads import in_order, prefetch
from gfpgan.inference.tracks.video_restorer import VideoFaceRestorer


def test_prefetch_runs_ahead_in_another_thread_and_keeps_order():
    seen = []

    def produce():
        for i in range(10):
            seen.append((i, threading.current_thread().name))
            yield i

    it = prefetch(produce(), size=3, name="test-prefetch")
    assert next(it) == 0
    time.sleep(0.2)
    assert len(seen) >= 4  # produced ahead while the consumer slept (1 taken + 3 queued)
    assert list(it) == list(range(1, 10))
    assert {name for _, name in seen} == {"test-prefetch"}


def test_prefetch_raises_the_producers_error_in_the_consumer():
    def produce():
        yield 1
        raise KeyError("boom")

    it = prefetch(produce())
    assert next(it) == 1
    with pytest.raises(KeyError, match="boom"):
        next(it)


def test_closing_prefetch_early_stops_the_producer():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = prefetch(endless(), size=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # joins the producer thread
    n = len(produced)
    time.sleep(0.1)
    assert len(produced) == n and n <= 3 + 2 + 1


def test_in_order_yields_by_position_not_by_completion_and_bounds_the_window():
    futures = [Future() for _ in range(0, 8, 2)]
    unfinished = []

    def items():  # futures at even positions, plain values at odd ones
        for i in range(8):
            unfinished.append(sum(not f.done() for f in futures[:(i + 1) // 2]))
            yield futures[i // 2] if i % 2 == 0 else i

    def finish():  # the last future finishes first
        for k in reversed(range(len(futures))):
            time.sleep(0.02)
            futures[k].set_result(2 * k)

    t = threading.Thread(target=finish)
    t.start()
    assert list(in_order(items(), window=2)) == list(range(8))
    t.join()
    assert max(unfinished) <= 2  # never more than the window in flight when the next comes


class Negative(torch.nn.Module):
    """A deterministic 'generator' whose output depends on its input (so pastes differ)."""

    out_size = 128

    def forward(self, x, **kwargs):
        return -x


@pytest.fixture(scope="module")
def clip():
    side = 200
    face = cv2.resize(skimage.data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(14):
        img = np.full((240, 400, 3), 70, np.uint8)
        if i not in (5, 6):  # two faceless frames in the middle
            img[20:20 + side, 10 + 12 * i:10 + 12 * i + side] = face
        frames.append(img)
    return frames


def test_overlapped_restorer_gives_the_same_frames_with_stages_in_their_threads(clip):
    plain = VideoFaceRestorer(Negative(), device="cpu", detect_every=4, overlap=False)
    expected = images(plain.process(clip))

    vr = VideoFaceRestorer(Negative(), device="cpu", detect_every=4, overlap=True, paste_workers=2)
    where = {"detect": set(), "paste": set()}
    detect, paste = vr.detector.detect, vr.paste
    vr.detector.detect = lambda frames: where["detect"].add(threading.current_thread().name) or detect(frames)
    vr.paste = lambda *a: where["paste"].add(threading.current_thread().name) or paste(*a)
    for _ in range(2):  # the pool and the thread are per call; a second call works the same
        out = images(vr.process(clip))
        assert len(out) == len(clip)
        for o, e in zip(out, expected):
            np.testing.assert_array_equal(o, e)
        assert out[5] is clip[5] and out[6] is clip[6]  # faceless frames pass through as they are
        assert not np.array_equal(out[0], clip[0])  # a face was restored and pasted
    assert where["detect"] == {"gfpgan-detect"}
    assert where["paste"] and all(n.startswith("gfpgan-paste") for n in where["paste"])
    assert vr._pool is None


def test_an_error_in_the_overlapped_detection_stage_reaches_the_caller(clip):
    vr = VideoFaceRestorer(Negative(), device="cpu", detect_every=4, overlap=True)
    frames = clip[:6] + [np.zeros((240, 400), np.uint8)]  # a gray frame: not RGB
    with pytest.raises(ValueError, match="frame 6: expected RGB uint8"):
        images(vr.process(frames))
    assert vr._pool is None
    assert len(images(vr.process(clip[:4]))) == 4  # usable again


@pytest.mark.gpu
def test_on_cuda_detection_runs_on_a_stream_of_its_own(clip):
    plain = VideoFaceRestorer(Negative(), device="cuda", detect_every=4, overlap=False)
    expected = images(plain.process(clip))
    vr = VideoFaceRestorer(Negative(), device="cuda", detect_every=4, overlap=True)
    streams = set()
    detect = vr.detector.detect
    vr.detector.detect = lambda frames: streams.add(torch.cuda.current_stream().stream_id) or detect(frames)
    out = images(vr.process(clip))
    assert len(out) == len(expected)
    for o, e in zip(out, expected):  # the same detector and generator kernels, other streams
        assert np.abs(o.astype(np.int16) - e).max() <= 2
    assert streams and torch.cuda.default_stream().stream_id not in streams
    assert torch.cuda.current_stream() == torch.cuda.default_stream()  # the caller's is untouched
