"""facecast.mapping and `facecast map`: input checks (no server), then the served style_mapper on a real Triton."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from PIL import Image, ImageDraw

from facecast.config import PROJECT_ROOT
from facecast.mapping import (
    FACE_SCORE_THRESHOLD,
    MAX_SIDE,
    MIN_SIDE,
    ClampNotice,
    MappingInputError,
    NotAFaceError,
    StyleMapper,
    load_picture,
    validate_overrides,
    validate_style,
    write_png_atomically,
)
from facecast.serving import process
from facecast.serving.errors import TritonUnavailable
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLE_MAPPER, STYLE_PARAM_BOUNDS, STYLES
from tests.badfiles import png_claiming_size
from tests.clipmaker import photo
from tests.triton_stats import model_counts, settled_model_counts

EMOJI = PROJECT_ROOT / "data" / "emoji"


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def not_a_face(kind: str = "blank") -> np.ndarray:
    """Pictures the face detector scores far below the threshold (measured: 0.06 blank, 0.09–0.18 gradient)."""
    if kind == "blank":
        return np.full((200, 240, 3), 255, np.uint8)
    ramp = np.linspace(0, 255, 240, dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(ramp[None, :, None], 200, axis=0).repeat(3, axis=2))


# ---- pictures (no server) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "empty"),
        (b"just some text, not a picture", "not an image"),
        (encode(Image.new("RGB", (64, 64), "red"))[:60], "corrupt|truncated"),
    ],
)
def test_unusable_files_are_refused_with_the_reason(data, expected) -> None:
    with pytest.raises(MappingInputError, match=expected) as caught:
        load_picture(data, name="face.png")
    assert str(caught.value).startswith("face.png: ")  # the user's name for the upload, not "uploaded image"
    assert isinstance(caught.value, ValueError)


def test_missing_file_and_folder(tmp_path) -> None:
    with pytest.raises(MappingInputError, match="no such file"):
        load_picture(tmp_path / "nope.png")
    with pytest.raises(MappingInputError, match="is a folder"):
        load_picture(tmp_path)


def test_tiny_picture_is_refused() -> None:
    with pytest.raises(MappingInputError, match=f"too small \\(16x40 px\\).*at least {MIN_SIDE} px"):
        load_picture(encode(Image.new("RGB", (16, 40), "white")))
    assert load_picture(encode(Image.new("RGB", (MIN_SIDE, MIN_SIDE), "white"))).shape == (MIN_SIDE, MIN_SIDE, 3)


def test_huge_picture_is_refused_before_decoding() -> None:
    with pytest.raises(MappingInputError, match="too large"):
        load_picture(png_claiming_size(8_000, 8_000))  # 64 MP, from the header alone
    with pytest.raises(MappingInputError, match="too large"):
        load_picture(png_claiming_size(100_000, 100_000))  # 10 gigapixels: Pillow's own bomb guard
    with pytest.raises(MappingInputError, match=f"at most {MAX_SIDE:,} px on a side"):
        load_picture(encode(Image.new("RGB", (MAX_SIDE + 1, 30), "white")))  # few pixels, absurd side


def test_transparent_png_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).ellipse((8, 8, 56, 56), fill=(200, 40, 40, 255))
    picture = load_picture(encode(rgba))
    assert picture.shape == (64, 64, 3)
    assert tuple(picture[0, 0]) == (255, 255, 255) and tuple(picture[32, 32]) == (200, 40, 40)
    array = load_picture(np.asarray(rgba))  # an RGBA array is treated the same way
    np.testing.assert_array_equal(array, picture)


@pytest.mark.parametrize("mode, fmt", [("L", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"), ("LA", "PNG")])
def test_other_colour_modes_become_rgb(mode, fmt) -> None:
    image = Image.new("RGB", (48, 40), (90, 140, 200))
    if mode == "I;16":
        image = Image.fromarray(np.full((40, 48), 40_000, np.uint16))
    else:
        image = image.convert(mode)
    picture = load_picture(encode(image, fmt))
    assert picture.dtype == np.uint8 and picture.shape == (40, 48, 3)
    if mode in ("L", "I;16", "LA"):
        assert np.all(picture[..., 0] == picture[..., 1]) and np.all(picture[..., 1] == picture[..., 2])


def test_gray_and_bad_arrays() -> None:
    assert load_picture(np.zeros((30, 30), np.uint8)).shape == (30, 30, 3)
    with pytest.raises(MappingInputError, match="uint8"):
        load_picture(np.zeros((30, 30, 3), np.float32))
    with pytest.raises(MappingInputError, match=r"\[H, W\]"):
        load_picture(np.zeros((30, 30, 5), np.uint8))


# ---- styles and parameters (no server) -----------------------------------------------------------------------------


def test_style_names() -> None:
    assert validate_style("anime") == "anime"
    assert validate_style(" Stylized 3D ") == "stylized_3d" and validate_style("stylized-3d") == "stylized_3d"
    for bad in ("pixar", "", None, 3):
        with pytest.raises(ValueError, match="choose one of realistic, cartoon, anime, stylized_3d"):
            validate_style(bad)


def test_overrides_are_clamped_into_the_target_style_and_said_so() -> None:
    values, notices = validate_overrides({"mouth": 0.99, "eye": "0.5", "brow": 0.0, "cheek": None}, "anime")
    assert values == {"mouth": 0.90, "eye": 0.5, "brow": 0.15}  # None = no override
    assert [n.message for n in notices] == [
        "mouth 0.99 is above anime's range [0.10, 0.90]; drawn at 0.90",
        "brow 0 is below anime's range [0.15, 0.85]; drawn at 0.15",
    ]
    assert all(isinstance(n, ClampNotice) and n.origin == "override" for n in notices)
    # each style's own bounds (seed 003 Table 5)
    for style, bounds in STYLE_PARAM_BOUNDS.items():
        values, notices = validate_overrides({p: 5 for p in ACTION_PARAMS}, style)
        assert values == {p: high for p, (_, high) in bounds.items()} and len(notices) == 4
        values, notices = validate_overrides({p: -1 for p in ACTION_PARAMS}, style)
        assert values == {p: low for p, (low, _) in bounds.items()} and len(notices) == 4
    assert validate_overrides(None, "cartoon") == ({}, [])
    assert validate_overrides({"mouth": 0.5}, "cartoon") == ({"mouth": 0.5}, [])


@pytest.mark.parametrize("value", ["abc", "", True, float("nan"), float("inf"), "-inf", [0.5], object()])
def test_values_that_are_not_numbers_are_rejected(value) -> None:
    with pytest.raises(MappingInputError, match="mouth: .*not a (finite )?number"):
        validate_overrides({"mouth": value}, "realistic")


def test_unknown_parameter_and_style_in_overrides() -> None:
    with pytest.raises(MappingInputError, match="unknown parameter 'nose'; the parameters are mouth, eye, brow, cheek"):
        validate_overrides({"nose": 0.5}, "realistic")
    with pytest.raises(MappingInputError, match="unknown style"):
        validate_overrides({"mouth": 0.5}, "watercolour")


def test_png_is_written_atomically(tmp_path, monkeypatch) -> None:
    target = tmp_path / "sub" / "face.png"
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    import os

    write_png_atomically(image, target)
    np.testing.assert_array_equal(np.asarray(Image.open(target)), image)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file, not the temporary file's 0600
    before = target.read_bytes()

    def fail(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_png_atomically(np.zeros((32, 32, 3), np.uint8), target)
    assert target.read_bytes() == before  # the old file, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["face.png"]  # no temporary file left behind


# ---- the served style_mapper ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mapper(full_server) -> StyleMapper:
    return StyleMapper.for_urls(full_server.triton_url)


@pytest.fixture(scope="module")
def style_sets(mapper):
    """Held-out synthetic characters drawn in all four styles (exact cross-style renderings)."""
    from training.data.style_pairs import build_style_sets

    return build_style_sets("test", 3, mapper.input_size, workers=1)


@pytest.fixture(scope="module")
def demo_faces(tmp_path_factory) -> Path:
    from training.data.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"))


def inside_bounds(params: dict[str, float], style: str) -> bool:
    return all(low - 1e-5 <= params[p] <= high + 1e-5 for p, (low, high) in STYLE_PARAM_BOUNDS[style].items())


@pytest.mark.triton
def test_input_size_comes_from_the_served_config(mapper, full_server) -> None:
    config = triton_http.InferenceServerClient(full_server.triton_url).get_model_config(STYLE_MAPPER)
    image = next(i for i in config["input"] if i["name"] == "image")
    assert mapper.input_size == int(image["dims"][0]) == int(image["dims"][1])


@pytest.mark.triton
def test_map_a_synthetic_face_into_another_style(mapper, style_sets) -> None:
    size = mapper.input_size
    realistic = style_sets["images"][0, STYLES.index("realistic")]
    result = mapper.map_expression(realistic, "anime")
    assert result.target_style == "anime"
    assert result.mapped.dtype == np.uint8 and result.mapped.shape == (size, size, 3)
    assert result.source.face.shape == (size, size, 3)
    assert set(result.applied_params) == set(result.source_params) == set(ACTION_PARAMS)
    assert inside_bounds(result.applied_params, "anime")
    assert set(result.emotion_probs) == set(EMOTIONS) and abs(sum(result.emotion_probs.values()) - 1) < 1e-5
    assert set(result.source_style_probs) == set(STYLES)
    assert abs(sum(result.source_style_probs.values()) - 1) < 1e-5
    # Nothing overridden: what is drawn is the source's own reading, moved into anime's range where needed.
    for param, (low, high) in STYLE_PARAM_BOUNDS["anime"].items():
        assert result.applied_params[param] == pytest.approx(min(high, max(low, result.source_params[param])), abs=1e-5)
    outside = {
        p
        for p, (low, high) in STYLE_PARAM_BOUNDS["anime"].items()
        if not low - 1e-6 <= result.source_params[p] <= high + 1e-6
    }
    assert {n.param for n in result.notices} == outside and all(n.origin == "source" for n in result.notices)
    assert json.loads(json.dumps(result.as_dict()))["target_style"] == "anime"


@pytest.mark.triton
def test_overrides_change_the_applied_parameters_and_the_picture(mapper, style_sets) -> None:
    face = style_sets["images"][1, STYLES.index("cartoon")]
    plain = mapper.map_expression(face, "realistic")
    closed = mapper.map_expression(face, "realistic", {"mouth": 0.2, "eye": 0.3})
    opened = mapper.map_expression(face, "realistic", {"mouth": 0.8, "eye": 0.85})
    assert closed.applied_params["mouth"] == pytest.approx(0.2) and closed.applied_params["eye"] == pytest.approx(0.3)
    assert opened.applied_params["mouth"] == pytest.approx(0.8) and opened.applied_params["eye"] == pytest.approx(0.85)
    for param in ("brow", "cheek"):  # not overridden: the source's own, the same in all three
        assert closed.applied_params[param] == pytest.approx(plain.applied_params[param], abs=1e-5)
        assert opened.applied_params[param] == pytest.approx(plain.applied_params[param], abs=1e-5)
    assert closed.overrides == {"mouth": 0.2, "eye": 0.3}
    assert np.abs(closed.mapped.astype(int) - opened.mapped).mean() > 1.0


@pytest.mark.triton
def test_out_of_bounds_override_is_clamped_by_client_and_graph_alike(mapper, style_sets) -> None:
    face = style_sets["images"][0, STYLES.index("stylized_3d")]
    result = mapper.map_expression(face, "anime", {"mouth": 0.99, "cheek": 0.01})
    assert result.applied_params["mouth"] == pytest.approx(0.90) and result.applied_params["cheek"] == pytest.approx(
        0.20
    )
    messages = [n.message for n in result.notices if n.origin == "override"]
    assert messages == [
        "mouth 0.99 is above anime's range [0.10, 0.90]; drawn at 0.90",
        "cheek 0.01 is below anime's range [0.20, 0.80]; drawn at 0.20",
    ]
    with pytest.raises(MappingInputError, match="not a number"):
        mapper.map_expression(face, "anime", {"mouth": "wide"})
    with pytest.raises(ValueError, match="unknown style 'claymation'"):
        mapper.map_expression(face, "claymation")


@pytest.mark.triton
def test_all_styles_is_one_batched_request_of_four_different_pictures(mapper, style_sets, full_server) -> None:
    face = style_sets["images"][2, STYLES.index("realistic")]
    prepared = mapper.prepare(face)  # detection happens once, outside the counted request
    before = model_counts(full_server.triton_url, STYLE_MAPPER)
    results = mapper.map_to_all_styles(prepared, {"mouth": 0.99})
    after = settled_model_counts(full_server.triton_url, STYLE_MAPPER, before)
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (1, 4, 1)
    assert list(results) == list(STYLES)
    for style, result in results.items():
        assert result.target_style == style and inside_bounds(result.applied_params, style)
        assert result.applied_params["mouth"] == pytest.approx(STYLE_PARAM_BOUNDS[style]["mouth"][1])  # 0.99 clamped
        assert [n.param for n in result.notices if n.origin == "override"] == ["mouth"]
    pictures = [results[s].mapped.astype(int) for s in STYLES]
    for i in range(len(STYLES)):
        for j in range(i + 1, len(STYLES)):
            assert np.abs(pictures[i] - pictures[j]).mean() > 2.0, (STYLES[i], STYLES[j])


@pytest.mark.triton
def test_a_picture_without_a_face_is_refused_unless_assumed(mapper) -> None:
    for kind in ("blank", "gradient"):
        with pytest.raises(NotAFaceError, match="upload.png: no face found"):
            mapper.map_expression(encode(Image.fromarray(not_a_face(kind))), "anime", name="upload.png")
    result = mapper.map_expression(not_a_face("blank"), "anime", assume_face=True)
    assert result.source.how == "assumed" and result.source.score is None
    assert result.mapped.shape == (mapper.input_size, mapper.input_size, 3)


@pytest.mark.triton
def test_tight_face_crops_pass_detection_whole(mapper, demo_faces, style_sets) -> None:
    """A picture that already is one face (the demo faces, held-out renderings) passes and is mapped whole."""
    hows = []
    for path in sorted(demo_faces.glob("*.png")):
        prepared = mapper.prepare(path)
        hows.append(prepared.how)
        assert prepared.score >= FACE_SCORE_THRESHOLD, path.name
    assert len(hows) == 28 and hows.count("whole picture") >= 24  # a few crops are tightened around the face
    for row in range(len(STYLES)):
        assert mapper.prepare(style_sets["images"][0, row]).how in ("whole picture", "detected face")


@pytest.mark.triton
def test_licensed_emoji_pass_detection(mapper) -> None:
    paths = sorted(EMOJI.glob("*/*.png"))
    if not paths:
        pytest.skip("data/emoji missing: `make emoji` fetches the licensed emoji sets")
    refused = []
    for path in paths:
        try:
            mapper.prepare(path)
        except NotAFaceError:
            refused.append(path.name)
    # measured: 2 of 135 (twemoji imp, rolling_on_the_floor_laughing) score under the threshold
    assert len(refused) <= max(3, len(paths) // 20), refused


@pytest.mark.triton
def test_a_face_in_a_larger_frame_is_found_and_cropped(mapper, style_sets) -> None:
    frame = photo("coffee", (640, 360)).copy()
    face = np.asarray(Image.fromarray(style_sets["images"][0, STYLES.index("cartoon")]).resize((150, 150)))
    frame[120:270, 400:550] = face
    prepared = mapper.prepare(frame)
    assert prepared.how == "detected face"
    x0, y0, x1, y1 = prepared.box
    overlap = max(0, min(x1, 550) - max(x0, 400)) * max(0, min(y1, 270) - max(y0, 120))
    assert overlap / ((x1 - x0) * (y1 - y0) + 150 * 150 - overlap) >= 0.3
    assert prepared.face.shape == (mapper.input_size, mapper.input_size, 3)


@pytest.mark.triton
def test_transparent_and_grayscale_faces_are_mapped(mapper, style_sets, tmp_path) -> None:
    face = style_sets["images"][0, STYLES.index("anime")]
    rgba = Image.fromarray(face).convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    ImageDraw.Draw(alpha).ellipse((4, 4, rgba.width - 5, rgba.height - 5), fill=255)
    rgba.putalpha(alpha)
    path = tmp_path / "transparent.png"
    rgba.save(path)
    result = mapper.map_expression(path, "realistic", assume_face=True)
    assert tuple(result.source.face[0, 0]) == (255, 255, 255)  # transparent corner → white
    gray = mapper.map_expression(encode(Image.fromarray(face).convert("L")), "cartoon", assume_face=True)
    assert gray.mapped.shape == (mapper.input_size, mapper.input_size, 3)
    assert np.all(gray.source.face[..., 0] == gray.source.face[..., 1])  # the gray source, as three equal channels


@pytest.mark.triton
def test_a_real_transparent_face_is_found_and_composited_on_white(mapper, tmp_path) -> None:
    """A licensed emoji cut out on alpha, mapped with face detection on (emoji come from `make emoji`)."""
    from tests.clipmaker import emoji

    path = tmp_path / "grin-alpha.png"
    emoji("grin").save(path)  # skips, saying why, when the emoji were not fetched
    assert Image.open(path).mode == "RGBA"
    result = mapper.map_expression(path, "anime")
    assert result.source is not None and result.source.how != "assumed"
    assert tuple(result.source.face[0, 0]) == (255, 255, 255)


@pytest.mark.triton
def test_save_to_library_ingests_the_mapped_face(full_server, mapper, style_sets, tmp_path) -> None:
    from facecast.library import Library, Query
    from facecast.mapping import save_to_library

    result = mapper.map_expression(style_sets["images"][1, 0], "anime", {"mouth": 0.4})
    with Library.open(tmp_path / "lib.duckdb", [full_server.triton_url]) as library:
        report = save_to_library(library, result, "item 7", character="c01301")
        assert len(report.added) == 1, report.as_dict()
        item_id, path = report.added[0]
        row = library.store.library.items([item_id]).iloc[0]
        assert row["style"] == "anime" and row["character"] == "c01301"
        assert row["source"] == f"mapped from item 7 ({result.source_style} to anime)"
        assert np.asarray(row["params"])[0] == pytest.approx(0.4)
        assert Path(path).is_file() and Path(path).parent == tmp_path / "mapped"
        assert item_id in set(library.index.live_ids().tolist())
        found = library.search(Query(image=result.mapped), top_k=1)
        assert found.results[0].id == item_id  # embedded and indexed like any other item
        again = save_to_library(library, result, "item 7")
        assert not again.added and again.duplicates[0][1] == item_id


def test_triton_down_says_how_to_start_it(tmp_path) -> None:
    (port,) = process.find_free_ports(1)
    mapper = StyleMapper.for_urls(f"127.0.0.1:{port}")
    with pytest.raises(TritonUnavailable, match="facecast serve --detach"):
        mapper.map_expression(np.full((64, 64, 3), 200, np.uint8), "anime", assume_face=True)
    with pytest.raises(MappingInputError):  # bad input is refused before the server is asked anything
        mapper.map_expression(np.full((64, 64, 3), 200, np.uint8), "clay")


# ---- the CLI -------------------------------------------------------------------------------------------------------


def facecast(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facecast", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.triton
def test_cli_maps_a_face_to_a_png(full_server, style_sets, tmp_path) -> None:
    source = tmp_path / "face.png"
    Image.fromarray(style_sets["images"][0, STYLES.index("realistic")]).save(source)
    out = tmp_path / "out" / "face-anime.png"
    done = facecast(
        "map",
        str(source),
        "--to",
        "anime",
        "--mouth",
        "0.99",
        "--eye",
        "0.5",
        "--out",
        str(out),
        "--url",
        full_server.triton_url,
    )
    assert done.returncode == 0, done.stderr
    size = style_sets["images"].shape[2]  # built at the served input size
    assert np.asarray(Image.open(out)).shape == (size, size, 3)
    assert "mouth 0.99 is above anime's range [0.10, 0.90]; drawn at 0.90" in done.stdout
    assert "applied  mouth=0.90 eye=0.50" in done.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["face-anime.png"]  # no temporary file left

    as_json = facecast(
        "map", str(source), "--to", "Stylized 3D", "--out", str(out), "--json", "--url", full_server.triton_url
    )
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["target_style"] == "stylized_3d" and document["out"] == str(out)
    assert inside_bounds(document["applied_params"], "stylized_3d")


@pytest.mark.triton
def test_cli_bad_input_is_one_line_and_exit_2(full_server, tmp_path) -> None:
    face = tmp_path / "face.png"
    Image.new("RGB", (64, 64), "white").save(face)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (10, 10), "white").save(tiny)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    out = tmp_path / "out.png"
    url = ["--url", full_server.triton_url]
    cases = [
        (["map", str(face), "--to", "pixar", "--out", str(out)], "unknown style 'pixar'; choose one of"),
        (["map", str(face), "--to", "anime", "--brow", "high", "--out", str(out)], "brow: 'high' is not a number"),
        (["map", str(face), "--to", "anime", "--out", str(tmp_path / "out.jpg")], "give a path ending in .png"),
        (["map", str(tmp_path / "missing.png"), "--to", "anime", "--out", str(out)], "no such file"),
        (["map", str(tiny), "--to", "anime", "--out", str(out)], "too small (10x10 px)"),
        (["map", str(text), "--to", "anime", "--out", str(out)], "not an image"),
        (["map", str(face), "--to", "anime", "--out", str(out)], "no face found"),
    ]
    for arguments, message in cases:
        done = facecast(*arguments, *url)
        assert done.returncode == 2, (arguments, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("facecast map: error: "), done.stderr
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert "--no-detect" in done.stderr  # the not-a-face refusal says how to map it anyway
    assert not out.exists()  # nothing written for refused input
    forced = facecast("map", str(face), "--to", "anime", "--out", str(out), "--no-detect", *url)
    assert forced.returncode == 0, forced.stderr
    assert "face detection skipped" in forced.stdout and out.is_file()


def test_cli_with_triton_down_exits_1(tmp_path) -> None:
    (port,) = process.find_free_ports(1)
    face = tmp_path / "face.png"
    Image.new("RGB", (64, 64), "white").save(face)
    done = facecast("map", str(face), "--to", "anime", "--out", str(tmp_path / "out.png"), "--url", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert "Triton is not reachable" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.png").exists()
