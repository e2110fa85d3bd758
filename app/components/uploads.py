"""Upload limits per kind of file, checked before anything is decoded.

Streamlit has one server-wide limit (`server.maxUploadSize` in .streamlit/config.toml), sized for trailer cuts
(1 GB). A face picture is a few hundred kB, so every image uploader asks for its own, much smaller limit: the
browser refuses a larger file before sending it (`max_upload_size`), and `within_limit` refuses it again here from
the size Streamlit reports, because a client other than the browser can still send up to the server-wide limit.
Pixels are bounded separately, from the image header, by facecast.media.images.load_rgb (bombs, absurd sides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import streamlit as st

from facecast.media.images import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from streamlit.runtime.uploaded_file_manager import UploadedFile

IMAGE_TYPES = sorted(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)
IMAGE_UPLOAD_MB = 10  # a face picture or a frame with one in it: a 4K PNG is ~8 MB


def clip_limit_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))


def too_large(upload: UploadedFile, limit_mb: int, kind: str) -> str | None:
    """The message for an upload over `limit_mb`, or None when it is within it."""
    if upload.size <= limit_mb * 1024 * 1024:
        return None
    return f"{upload.name} is {upload.size / 1e6:,.1f} MB; {kind} of at most {limit_mb} MB are accepted."


def within_limit(uploads: Sequence[UploadedFile], limit_mb: int, kind: str) -> list[UploadedFile]:
    """The uploads within the limit; each one over it is named in an error on the page and never read."""
    kept = []
    for upload in uploads:
        message = too_large(upload, limit_mb, kind)
        if message is None:
            kept.append(upload)
        else:
            st.error(message, icon=":material/block:")
    return kept


def image_uploader(label: str, *, help: str | None = None, key: str | None = None) -> UploadedFile | None:
    """One face picture, within IMAGE_UPLOAD_MB (None when none is given or it is refused)."""
    upload = st.file_uploader(label, type=IMAGE_TYPES, help=_with_limit(help), key=key, max_upload_size=IMAGE_UPLOAD_MB)
    if upload is None:
        return None
    kept = within_limit([upload], IMAGE_UPLOAD_MB, "pictures")
    return kept[0] if kept else None


def image_uploads(label: str, *, help: str | None = None, key: str | None = None) -> list[UploadedFile]:
    """Several face pictures, each within IMAGE_UPLOAD_MB (those over it are named in an error and dropped)."""
    uploads = st.file_uploader(
        label,
        type=IMAGE_TYPES,
        accept_multiple_files=True,
        help=_with_limit(help),
        key=key,
        max_upload_size=IMAGE_UPLOAD_MB,
    )
    return within_limit(uploads or [], IMAGE_UPLOAD_MB, "pictures")


def _with_limit(help: str | None) -> str:
    limit = f"PNG, JPEG, WebP, GIF or BMP, up to {IMAGE_UPLOAD_MB} MB each."
    return f"{help} {limit}" if help else limit
