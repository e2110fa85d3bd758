"""The one image decoder shared by training and serving.

A network only sees what this module hands it, so training and serving must preprocess a face image in exactly the
same way: a different alpha background, a missed EXIF rotation or another resize filter at serving time is a
silent shift of the input distribution that no test of the network itself would catch. Training data builders,
the dataset loader, the CLI and the app therefore all go through `load_rgb` / `fit_square` / `load_face`.

The module is torch-free (numpy + Pillow only) because the runtime never imports torch.

Decisions, each made once here:
- transparency is composited on WHITE: emoji and artists' exports are drawn on transparent canvases meant for
  light backgrounds, and black would turn dark outlines invisible;
- EXIF orientation is honoured, so a phone photo of a sketch is upright;
- grayscale, palette, CMYK and 16-bit images become 8-bit RGB;
- a file that cannot be used raises `ImageDecodeError` whose message names the file and the problem in plain
  words, never a Pillow traceback: the message goes straight to a user who uploaded the file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The one size check every image path goes through (uploads, library ingest, classify, map, training data), all
# refused before any pixel is decoded:
# 50 megapixels: far above any real face crop or frame (8K is 33 MP), far below what fills memory when decoded.
DEFAULT_MAX_PIXELS = 50_000_000
# 10,000 px on a side: a 100000×1 strip has few pixels but is no picture of a face, and tiles badly when resized.
DEFAULT_MAX_SIDE = 10_000
# 64 MB on disk: an 8K PNG is ~50 MB; a larger file is read whole into memory for nothing.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# 16 px: the smallest face picture classify, the library and search accept (upscaling a 1×1 dot to 64 px gives the
# networks a flat colour, and a confident-looking answer about nothing).
MIN_FACE_SIDE = 16
SUPPORTED_FORMATS = "PNG, JPEG, WebP, GIF, BMP"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})
WHITE = (255, 255, 255)


class ImageDecodeError(ValueError):
    """An image that cannot be used; the message names the file and says what is wrong."""


def _describe(source: str | Path | bytes) -> str:
    """How the user knows the source: its path, or a stand-in for in-memory bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "uploaded image"
    return str(source)


def _too_big(name: str, size: int, max_bytes: int) -> ImageDecodeError:  # one wording for paths and bytes
    return ImageDecodeError(
        f"{name}: the file is too large ({size / 1e6:,.1f} MB; image files of at most {max_bytes / 1e6:,.0f} MB "
        "are accepted)"
    )


def read_image_bytes(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """An image file's bytes, for callers that hash or keep them before decoding; a missing file, a folder, a file
    over `max_bytes` (checked before reading) or an unreadable one raises ImageDecodeError naming the path."""
    return _read_bytes(path, str(path), max_bytes)


def _read_bytes(source: str | Path | bytes, name: str, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:
            raise _too_big(name, len(source), max_bytes)
        return bytes(source)
    path = Path(source)
    if not path.exists():
        raise ImageDecodeError(f"{name}: no such file")
    if path.is_dir():
        raise ImageDecodeError(f"{name}: is a folder, not an image file")
    if not path.is_file():
        raise ImageDecodeError(f"{name}: not a file")
    try:
        size = path.stat().st_size
        if size > max_bytes:  # before reading: a 2 GB file named .png is never loaded
            raise _too_big(name, size, max_bytes)
        return path.read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"{name}: cannot be read ({error.strerror or error})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, transparency composited on white."""
    if image.mode == "P":
        # A palette image may carry transparency in its tRNS chunk / GIF transparency index.
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    elif image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grayscale (PNG): Pillow's own convert("L") clips at 255 instead of scaling, turning it white.
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(gray, mode="L")
    elif image.mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        image = Image.fromarray(gray, mode="L")

    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("RGB", "L") and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return image


def load_rgb(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    max_bytes: int = DEFAULT_MAX_BYTES,
    min_side: int = 1,
    name: str | None = None,
) -> np.ndarray:
    """Decode an image file (path or bytes) to uint8 RGB [H, W, 3].

    Reads PNG, JPEG, WebP, GIF (first frame) and BMP. Raises ImageDecodeError for an empty file, something that
    is not an image, a truncated or corrupt file, a file of more than `max_bytes`, or an image of more than
    `max_pixels` pixels or `max_side` px on a side (checked from the header, before anything is decoded, so a
    decompression bomb costs nothing), or under `min_side` px on a side. `name` is how the user knows the source
    (an upload's file name); messages start with it.
    """
    name = name or _describe(source)
    data = _read_bytes(source, name, max_bytes)
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty (0 bytes)")

    with warnings.catch_warnings():
        # Our own max_pixels check replaces Pillow's global bomb warning; the warning would only add noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageDecodeError(f"{name}: not an image that can be read (supported: {SUPPORTED_FORMATS})") from None
        except Image.DecompressionBombError:
            # Pillow refuses headers past twice its own limit before we see the size.
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            raise ImageDecodeError(
                f"{name}: the image is too large (its header claims more than {limit:,} pixels, "
                f"at most {max_pixels:,} are accepted); it looks like a decompression bomb"
            ) from None
        except Exception as error:  # a broken header makes Pillow raise many kinds of errors
            raise ImageDecodeError(f"{name}: the image header is corrupt ({error})") from None

        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageDecodeError(f"{name}: the image has no pixels ({width}x{height})")
        if width * height > max_pixels or max(width, height) > max_side:
            raise ImageDecodeError(
                f"{name}: the image is too large ({width}x{height} px; at most {max_side:,} px on a side and "
                f"{max_pixels:,} pixels are accepted)"
            )
        if min(width, height) < min_side:
            raise ImageDecodeError(
                f"{name}: the picture is too small ({width}x{height} px); a face needs at least {min_side} px on "
                "each side"
            )
        try:
            image.seek(0)  # animated GIF / WebP: the first frame
            image.load()
        except Exception as error:  # truncated data and corrupt streams surface as OSError, SyntaxError, zlib.error...
            reason = "truncated" if "truncated" in str(error).lower() else "corrupt"
            raise ImageDecodeError(f"{name}: the image data is {reason} and cannot be decoded ({error})") from None

    upright: Image.Image = image
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:
        pass  # an unreadable EXIF block must not reject a decodable image; it is then shown as stored
    try:
        rgb = _to_rgb(upright)
    except Exception as error:
        raise ImageDecodeError(
            f"{name}: the image uses a colour format that cannot be converted to RGB (mode {image.mode}: {error})"
        ) from None
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def border_colour(image: np.ndarray) -> np.ndarray:
    """Median colour of the outermost rows and columns: the background a face crop sits on."""
    edges = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]], axis=0)
    return np.median(edges, axis=0).round().astype(np.uint8)


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize keeping the aspect ratio so the long side is `size`, then pad to a centred square.

    Padding uses the image's own border colour, not black, so the network never learns "bars = something".
    Downscaling is antialiased (Lanczos); upscaling (tiny images, e.g. 8x8 icons) uses bicubic, which rings less
    on the hard edges of drawn art.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {list(image.shape)}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"the image has no pixels ({width}x{height})")
    if height == width == size:
        return image.copy()

    scale = size / max(height, width)
    new_width = min(size, max(1, round(width * scale)))
    new_height = min(size, max(1, round(height * scale)))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    resized = np.asarray(Image.fromarray(image).resize((new_width, new_height), resample), dtype=np.uint8)

    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = border_colour(image)
    top = (size - new_height) // 2
    left = (size - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = resized
    return canvas


def load_face(source: str | Path | bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a face image and fit it into a `size` x `size` square: uint8 [size, size, 3]."""
    return fit_square(load_rgb(source, max_pixels=max_pixels), size)


FACE_CROP_MARGIN = 0.15  # of the face box's longer side, on each side: the crop shows the whole head and a little more


def square_around(box_xyxy: Sequence[float], margin: float = FACE_CROP_MARGIN) -> tuple[float, float, float, float]:
    """The square (x0, y0, x1, y1) centred on a face box, its side the box's longer side plus `margin` each side."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def face_crop(frame: np.ndarray, box_xyxy: Sequence[float], size: int, margin: float = FACE_CROP_MARGIN) -> np.ndarray:
    """The face crop the expression encoder sees: `square_around(box)` cut from the frame, resized to size×size.

    Where the square leaves the frame it is padded with the frame's border colour near the face (like fit_square),
    so a face at the edge of the picture keeps its proportions instead of being stretched."""
    height, width = frame.shape[:2]
    sx0, sy0, sx1, sy1 = (int(round(v)) for v in square_around(box_xyxy, margin))
    side = max(1, sx1 - sx0)
    cx0, cy0, cx1, cy1 = max(0, sx0), max(0, sy0), min(width, sx0 + side), min(height, sy0 + side)
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"face box {tuple(box_xyxy)} lies outside the {width}x{height} frame")
    inside = frame[cy0:cy1, cx0:cx1]
    if (cx0, cy0, cx1, cy1) != (sx0, sy0, sx0 + side, sy0 + side):
        canvas = np.empty((side, side, 3), np.uint8)
        canvas[:] = border_colour(inside)
        canvas[cy0 - sy0 : cy1 - sy0, cx0 - sx0 : cx1 - sx0] = inside
        inside = canvas
    resample = Image.Resampling.BILINEAR if side > size else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(np.ascontiguousarray(inside)).resize((size, size), resample), dtype=np.uint8)


def image_files(paths: Iterable[str | Path], *, recursive: bool = True) -> list[Path]:
    """Files as given (whatever their suffix: the decoder says what is wrong with them); folders become the image
    files in them (by suffix, sorted; with `recursive`, in subfolders too)."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = path.rglob("*") if recursive else path.iterdir()
            expanded += sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            expanded.append(path)
    return expanded
