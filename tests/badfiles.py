"""Bad files made from code, shared by the unit tests and the adversarial suite (benchmarks/adversarial.py)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import av
import numpy as np


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims a huge canvas: a decompression bomb (or an absurd strip)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def audio_only(path: Path) -> Path:
    """A second of silence in AAC: a file with sound and no picture."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44_100)
        for k in range(30):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 44_100
            frame.pts = k * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def index_last_mp4(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """An MP4 as cameras and plain `ffmpeg` write it: the index (moov) after the data, so a cut loses the index."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path
