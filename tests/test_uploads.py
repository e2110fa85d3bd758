"""Upload limits per kind (app/components/uploads.py): the server-side check behind the browser's own.

The browser refuses an oversized picture before sending it (tests/test_browser.py shows that in Chromium); a client
other than the browser can still send up to Streamlit's server-wide limit, so the page checks the size Streamlit
reports again, before reading a byte of it."""

from __future__ import annotations

from streamlit.proto.Common_pb2 import FileURLs
from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec

from app.components.uploads import IMAGE_TYPES, IMAGE_UPLOAD_MB, too_large
from facecast.media.images import IMAGE_SUFFIXES


def _upload(name: str, size: int) -> UploadedFile:
    return UploadedFile(UploadedFileRec("id", name, "image/png", b"\0" * size), FileURLs())


def test_a_picture_over_its_limit_is_named_with_both_sizes():
    limit = IMAGE_UPLOAD_MB * 1024 * 1024
    assert too_large(_upload("face.png", limit), IMAGE_UPLOAD_MB, "pictures") is None
    message = too_large(_upload("huge.png", limit + 1), IMAGE_UPLOAD_MB, "pictures")
    assert message == f"huge.png is 10.5 MB; pictures of at most {IMAGE_UPLOAD_MB} MB are accepted."


def test_every_uploader_accepts_what_the_decoder_reads():
    assert {f".{kind}" for kind in IMAGE_TYPES} == set(IMAGE_SUFFIXES)
