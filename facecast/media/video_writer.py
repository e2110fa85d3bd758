"""Writing video files: test fixtures, synthetic training clips and demo clips (PyAV encoders, no torch).

The file appears only when complete (a temporary file in the same folder, renamed), so a reader never sees half a
clip; frames are checked and bad input raises facecast.media.video.MediaError with the file named.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import uuid
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from facecast.media.video import MediaError

# suffix -> (FFmpeg muxer, default encoder)
_CONTAINERS: dict[str, tuple[str, str]] = {
    ".mp4": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
    ".gif": ("gif", "gif"),
}

# Fast presets: these files are test fixtures and synthetic training clips, written often; the quality settings
# keep faces sharp enough for the detector (crf 18 is visually lossless for x264).
_ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"preset": "veryfast", "crf": "18"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "24", "b": "0", "row-mt": "1"},
}

# Timestamps given by the caller are stored at 1/90000 s (the MPEG clock); Matroska and GIF muxers round them to
# their own clocks (1 ms, 10 ms).
_FINE_TIME_BASE = Fraction(1, 90_000)


def _check_frame(frame: np.ndarray, index: int, path: Path) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise MediaError(
            f"{path}: frame {index} must be a uint8 RGB array [H, W, 3], got {frame.dtype} {list(frame.shape)}"
        )
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise MediaError(f"{path}: frame {index} has no pixels ({frame.shape[1]}x{frame.shape[0]})")
    return frame


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    """4:2:0 chroma needs even sides; repeat the last row/column rather than crop so no content is lost."""
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _to_video_frame(frame: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    if pix_fmt != "pal8":
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    # FFmpeg's scaler cannot make palettes; an adaptive palette per frame keeps GIF colours close to the source.
    quantized = Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    rgb = np.zeros((256, 3), np.uint8)
    used = np.asarray(quantized.getpalette(), np.uint8).reshape(-1, 3)[:256]
    rgb[: len(used)] = used
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), rgb], axis=1)
    # pal8 takes (indices, palette); PyAV's stubs know only single arrays
    return av.VideoFrame.from_ndarray((np.asarray(quantized, np.uint8), argb), format="pal8")  # type: ignore[arg-type]


def _pixel_format(codec_name: str) -> str:
    formats = [fmt.name for fmt in (av.codec.Codec(codec_name, "w").video_formats or ())]
    for preferred in ("yuv420p", "pal8", "rgb8", "yuvj420p"):
        if preferred in formats:
            return preferred
    if not formats:
        raise MediaError(f"encoder {codec_name!r} lists no pixel format")
    return formats[0]


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    codec: str | None = None,
    *,
    rotation: int = 0,
    timestamps_s: Sequence[float] | None = None,
) -> Path:
    """Encode RGB frames (uint8 [H, W, 3], all the same size) into `path`; the container follows the suffix.

    .mp4 / .mov / .mkv -> H.264 (libx264, yuv420p), .webm -> VP9, .gif -> GIF; `codec` overrides the encoder.
    4:2:0 formats need even sides, so odd frames get their last row/column repeated.
    `rotation` (0, 90, 180, 270) stores a display matrix saying the frames must be turned that many degrees
    CLOCKWISE to be upright (what a phone writes for portrait video); GIF cannot store it.
    `timestamps_s` gives each frame's presentation time (strictly increasing), making a variable-frame-rate file;
    `fps` is then only the nominal rate. MP4/MOV are written with the index first (faststart), as for streaming.
    The file appears only when complete: the encode goes to a temporary file in the same folder that is renamed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _CONTAINERS:
        raise MediaError(f"{path}: cannot write a {suffix or 'suffix-less'} file; use one of {', '.join(_CONTAINERS)}")
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and fps > 0):
        raise MediaError(f"{path}: fps must be a positive number, got {fps!r}")
    # Denominators up to 1001 make 29.97 and 23.976 (NTSC) exact.
    rate = fps if isinstance(fps, (int, Fraction)) else Fraction(float(fps)).limit_denominator(1001)
    if rotation % 90 != 0:
        raise MediaError(f"{path}: rotation must be a multiple of 90 degrees, got {rotation}")
    rotation %= 360
    muxer, default_codec = _CONTAINERS[suffix]
    codec_name = codec or default_codec
    if rotation and muxer == "gif":
        raise MediaError(f"{path}: GIF cannot store a rotation; rotate the frames instead")
    if timestamps_s is not None:
        times = [float(t) for t in timestamps_s]
        if any(not math.isfinite(t) for t in times) or any(b <= a for a, b in itertools.pairwise(times)):
            raise MediaError(f"{path}: timestamps_s must be finite and strictly increasing")
    else:
        times = None

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        _encode(partial, muxer, codec_name, frames, Fraction(rate), rotation, times, path)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _encode(
    partial: Path,
    muxer: str,
    codec_name: str,
    frames: Iterable[np.ndarray],
    rate: Fraction,
    rotation: int,
    times: list[float] | None,
    path: Path,
) -> None:
    options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
    count = 0
    with av.open(str(partial), "w", format=muxer, options=options) as container:
        stream: av.video.stream.VideoStream | None = None
        size: tuple[int, ...] = ()
        pix_fmt = ""
        needs_even = False
        for count, frame in enumerate(frames, start=1):
            index = count - 1
            frame = _check_frame(frame, index, path)
            if stream is None:
                try:
                    added = container.add_stream(codec_name, rate=rate)
                except (av.error.FFmpegError, ValueError) as error:
                    raise MediaError(f"{path}: encoder {codec_name!r} is not available ({error})") from None
                if not isinstance(added, av.video.stream.VideoStream):
                    raise MediaError(f"{path}: {codec_name!r} is not a video encoder")
                stream = added
                stream.pix_fmt = pix_fmt = _pixel_format(codec_name)
                needs_even = pix_fmt.startswith(("yuv420", "yuvj420"))
                size = frame.shape[:2]
                padded = _pad_to_even(frame) if needs_even else frame
                stream.height, stream.width = padded.shape[:2]
                stream.options = dict(_ENCODER_OPTIONS.get(codec_name, {}))
                if times is not None:
                    stream.codec_context.time_base = _FINE_TIME_BASE
                if rotation:
                    # PyAV's angle is counter-clockwise (as VideoFrame.rotation reads it back); ours is clockwise.
                    stream.set_display_rotation(-rotation)
            if frame.shape[:2] != size:
                raise MediaError(
                    f"{path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, but the first "
                    f"frame is {size[1]}x{size[0]}; all frames must have the same size"
                )
            if needs_even:
                frame = _pad_to_even(frame)
            video_frame = _to_video_frame(frame, pix_fmt)
            if times is not None:
                if index >= len(times):
                    raise MediaError(f"{path}: more frames than timestamps_s ({len(times)})")
                video_frame.pts = round(times[index] / _FINE_TIME_BASE)
                video_frame.time_base = _FINE_TIME_BASE
            else:
                video_frame.pts = index
                video_frame.time_base = 1 / rate
            try:
                container.mux(stream.encode(video_frame))
            except av.error.FFmpegError as error:
                raise MediaError(f"{path}: encoding frame {index} failed ({error})") from None
        if stream is None:
            raise MediaError(f"{path}: no frames to write")
        if times is not None and count != len(times):
            raise MediaError(f"{path}: {count} frames but {len(times)} timestamps_s")
        container.mux(stream.encode(None))
