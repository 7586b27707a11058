"""Container I/O: probe, decode, encode and join video files with PyAV, timestamps and streams.

This layer knows video files, not faces: it imports nothing of ``gfpgan.inference`` outside
itself, only :mod:`gfpgan.errors` and :mod:`gfpgan.images` (frames from a folder of images).

* :mod:`~.info` the records a probe fills (:class:`VideoInfo`, :class:`AudioInfo`);
* :mod:`~.probe` checks an input and builds its frame table (:func:`probe_video`);
* :mod:`~.timestamps` repairs broken frame timestamps as FFmpeg's player does;
* :mod:`~.decode` frame-exact, upright RGB decoding of any timestamp range (:func:`iter_frames`);
* :mod:`~.encode` one segment of restored frames to a file (:class:`SegmentEncoder`);
* :mod:`~.streams` audio, subtitles, chapters and metadata carried into the output;
* :mod:`~.join` the segments and those streams remuxed into the output (:func:`join_segments`).

This ``__init__`` re-exports the names the job uses and defines nothing.
"""

from gfpgan.inference.video.decode import DecodedFrame, iter_frames
from gfpgan.inference.video.encode import SegmentEncoder, default_pix_fmt, encoder_options
from gfpgan.inference.video.info import AudioInfo, VideoInfo
from gfpgan.inference.video.join import OUTPUT_FORMATS, file_size, join_segments
from gfpgan.inference.video.probe import probe_video

__all__ = ["AudioInfo", "VideoInfo", "DecodedFrame", "probe_video", "iter_frames", "SegmentEncoder",
           "join_segments", "encoder_options", "default_pix_fmt", "OUTPUT_FORMATS", "file_size"]
