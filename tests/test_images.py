"""facecast.media.images: the decoder shared by training and serving."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facecast.media.images import ImageDecodeError, border_colour, fit_square, load_face, load_rgb
from tests.badfiles import png_claiming_size


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# --- colour modes -----------------------------------------------------------------------------------------------


def test_rgb_png_round_trips_exactly():
    pixels = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    decoded = load_rgb(encode(Image.fromarray(pixels)))
    assert decoded.dtype == np.uint8 and decoded.shape == (12, 17, 3)
    np.testing.assert_array_equal(decoded, pixels)


def test_transparent_pixels_become_white_and_half_alpha_blends_with_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[2] = (255, 0, 0, 255)  # opaque red stays red
    rgba[3] = (0, 0, 255, 128)  # half-transparent blue -> light blue
    decoded = load_rgb(encode(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(decoded[:2], 255)
    np.testing.assert_array_equal(decoded[2], [[255, 0, 0]] * 4)
    assert np.all(np.abs(decoded[3].astype(int) - [127, 127, 255]) <= 1)


def test_gray_alpha_and_palette_transparency_are_composited_on_white():
    la = Image.fromarray(np.stack([np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8)], axis=-1), "LA")
    np.testing.assert_array_equal(load_rgb(encode(la)), 255)

    palette = Image.new("P", (3, 3), 0)
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette.putpixel((1, 1), 1)
    for fmt in ("PNG", "GIF"):
        decoded = load_rgb(encode(palette, fmt, transparency=0))
        assert tuple(decoded[0, 0]) == (255, 255, 255), fmt
        assert tuple(decoded[1, 1]) == (200, 10, 10), fmt


def test_grayscale_becomes_three_equal_channels():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    decoded = load_rgb(encode(Image.fromarray(gray, "L")))
    assert decoded.shape == (8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)  # mode I;16
    decoded = load_rgb(encode(image))
    assert list(decoded[0, :, 0]) == [0, 128, 255]


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    decoded = load_rgb(encode(cmyk, "JPEG", quality=95))
    assert decoded.shape == (16, 16, 3)
    red, green, blue = decoded[8, 8].astype(int)
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP", "GIF"])
def test_common_formats_decode(fmt):
    image = Image.new("RGB", (20, 10), (30, 200, 60))
    decoded = load_rgb(encode(image, fmt))
    assert decoded.shape == (10, 20, 3)
    assert np.all(np.abs(decoded.astype(int) - [30, 200, 60]).max(axis=-1) <= 12)


def test_animated_gif_yields_its_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = load_rgb(data)
    assert tuple(decoded[4, 4]) == (255, 0, 0)


def test_exif_orientation_is_honoured():
    stored = np.zeros((10, 20, 3), dtype=np.uint8)  # wide image: left half red, right half blue
    stored[:, :10] = (255, 0, 0)
    stored[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = load_rgb(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif))
    assert decoded.shape == (20, 10, 3)  # upright: tall
    top, bottom = decoded[2, 5].astype(int), decoded[17, 5].astype(int)
    assert top[0] > 200 and top[2] < 60  # what was on the left is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_paths_and_bytes_give_the_same_pixels(tmp_path):
    data = encode(Image.new("RGB", (5, 7), (1, 2, 3)))
    file = tmp_path / "face.png"
    file.write_bytes(data)
    from_bytes = load_rgb(data)
    np.testing.assert_array_equal(load_rgb(file), from_bytes)
    np.testing.assert_array_equal(load_rgb(str(file)), from_bytes)


# --- unusable files ---------------------------------------------------------------------------------------------


def test_empty_file_is_a_clear_error(tmp_path):
    file = tmp_path / "empty.png"
    file.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty\.png.*empty"):
        load_rgb(file)


def test_missing_file_and_directory_are_clear_errors(tmp_path):
    with pytest.raises(ImageDecodeError, match=r"nope\.png: no such file"):
        load_rgb(tmp_path / "nope.png")
    with pytest.raises(ImageDecodeError, match="is a folder, not an image file"):
        load_rgb(tmp_path)


def test_not_an_image_is_a_clear_error(tmp_path):
    file = tmp_path / "notes.png"
    file.write_text("this is a text file, not a picture\n" * 10)
    with pytest.raises(ImageDecodeError, match=r"notes\.png: not an image"):
        load_rgb(file)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_a_clear_error(tmp_path, fmt):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), fmt)
    file = tmp_path / f"cut.{fmt.lower()}"
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=r"cut\.\w+: the image data is (truncated|corrupt)") as caught:
        load_rgb(file)
    assert "Traceback" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no Pillow traceback attached


def test_corrupt_png_data_is_a_clear_error():
    data = bytearray(encode(Image.fromarray(np.full((32, 32, 3), 7, np.uint8))))
    start = data.index(b"IDAT") + 8
    data[start : start + 20] = b"\xff" * 20  # garbage inside the compressed stream
    with pytest.raises(ImageDecodeError, match="uploaded image: the image"):
        load_rgb(bytes(data))


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="too large|absurdly large"):
        load_rgb(png_claiming_size(100_000, 100_000))  # 10 gigapixels
    with pytest.raises(ImageDecodeError, match="too large"):
        load_rgb(png_claiming_size(10_000, 6_000))  # 60 MP: over the 50 MP default, under Pillow's own limit


def test_max_pixels_is_configurable():
    data = encode(Image.new("RGB", (100, 100)))
    with pytest.raises(ImageDecodeError, match="9,999 pixels"):
        load_rgb(data, max_pixels=9_999)
    assert load_rgb(data, max_pixels=10_000).shape == (100, 100, 3)


def test_an_absurd_side_is_refused_from_the_header():
    with pytest.raises(ImageDecodeError, match=r"100000x1 px; at most 10,000 px on a side"):
        load_rgb(png_claiming_size(100_000, 1))  # 100,000 pixels only, but no picture of a face


def test_a_file_over_the_byte_limit_is_never_read(tmp_path):
    huge = tmp_path / "huge.png"
    with huge.open("wb") as file:  # sparse: 100 MB on paper, nothing on disk
        file.truncate(100 * 1024 * 1024)
    with pytest.raises(ImageDecodeError, match=r"huge.png: the file is too large \(104.9 MB; .* at most 67 MB"):
        load_rgb(huge)
    with pytest.raises(ImageDecodeError, match=r"face.png: the file is too large"):
        load_rgb(encode(Image.new("RGB", (64, 64))), max_bytes=10, name="face.png")


# --- fit_square -------------------------------------------------------------------------------------------------


def test_wide_image_is_padded_with_its_border_colour_and_centred():
    image = np.full((32, 64, 3), (90, 90, 90), dtype=np.uint8)  # gray background
    image[8:24, 24:40] = (255, 0, 0)  # red face in the middle
    square = fit_square(image, 64)
    assert square.shape == (64, 64, 3) and square.dtype == np.uint8
    np.testing.assert_array_equal(square[:16], 90)  # padding above
    np.testing.assert_array_equal(square[48:], 90)  # padding below
    assert tuple(square[32, 32]) == (255, 0, 0)  # the face stays centred


def test_tall_image_is_padded_left_and_right():
    image = np.full((100, 50, 3), 200, dtype=np.uint8)
    square = fit_square(image, 40)
    assert square.shape == (40, 40, 3)
    np.testing.assert_array_equal(square[:, :10], 200)
    np.testing.assert_array_equal(square[:, 30:], 200)


def test_border_colour_is_the_median_of_the_outer_pixels():
    image = np.full((10, 10, 3), 50, dtype=np.uint8)
    image[0, 0] = (255, 255, 255)  # one odd corner pixel does not change the median
    image[3:7, 3:7] = 0  # the inside does not count
    assert tuple(border_colour(image)) == (50, 50, 50)


def test_tiny_image_is_upscaled():
    tiny = np.zeros((8, 8, 3), dtype=np.uint8)
    tiny[:, :4] = (255, 255, 255)
    square = fit_square(tiny, 64)
    assert square.shape == (64, 64, 3)
    assert square[32, 5].min() > 240 and square[32, 58].max() < 15


def test_downscaling_is_antialiased():
    checkerboard = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checkerboard[..., None], 3, axis=-1)
    small = fit_square(image, 32)
    assert abs(float(small.mean()) - 127.5) < 10 and small.std() < 20  # flat gray, not aliased stripes


def test_same_size_square_is_returned_unchanged_and_bad_input_is_rejected():
    image = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fit_square(image, 16), image)
    with pytest.raises(ValueError):
        fit_square(image.astype(np.float32), 16)
    with pytest.raises(ValueError):
        fit_square(image[..., :2], 16)


def test_load_face_combines_decode_and_fit():
    rgba = np.zeros((30, 60, 4), dtype=np.uint8)  # transparent canvas
    rgba[5:25, 20:40] = (0, 128, 0, 255)
    face = load_face(encode(Image.fromarray(rgba, "RGBA")), 48)
    assert face.shape == (48, 48, 3)
    assert tuple(face[0, 0]) == (255, 255, 255)  # white background and white padding
    assert tuple(face[24, 24]) == (0, 128, 0)


def test_a_face_picture_under_the_minimum_side_is_refused_with_its_size():
    from facecast.media.images import MIN_FACE_SIDE

    dot = encode(Image.new("RGB", (1, 1)))
    assert load_rgb(dot).shape == (1, 1, 3)  # a picture, for callers that do not need a face in it
    with pytest.raises(
        ImageDecodeError,
        match=rf"dot.png: the picture is too small \(1x1 px\); a face needs at least {MIN_FACE_SIDE} px",
    ):
        load_rgb(dot, min_side=MIN_FACE_SIDE, name="dot.png")
    assert load_rgb(encode(Image.new("RGB", (MIN_FACE_SIDE, 40))), min_side=MIN_FACE_SIDE).shape == (40, 16, 3)
