"""training.data.emoji: the name -> emotion table, and the real build from the cached npm tarballs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.vocab import EMOTIONS
from training.data.emoji import EMOJI_SETS, FACE_TABLE, SOURCES, build, emotion_for_name
from training.data.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / "data" / "cache" / "npm"


@pytest.mark.parametrize(
    "name, emotion",
    [
        ("grinning face", "happiness"),
        ("beaming face with smiling eyes", "happiness"),
        ("face with tears of joy", "happiness"),
        ("grinning cat", "happiness"),
        ("crying face", "sadness"),
        ("loudly crying face", "sadness"),
        ("pensive face", "sadness"),
        ("crying cat", "sadness"),
        ("pouting face", "anger"),  # the older name of the enraged face
        ("enraged face", "anger"),
        ("angry face", "anger"),
        ("face with symbols on mouth", "anger"),
        ("pouting cat", "anger"),
        ("astonished face", "surprise"),
        ("hushed face", "surprise"),
        ("face with open mouth", "surprise"),
        ("fearful face", "fear"),
        ("anxious face with sweat", "fear"),
        ("face screaming in fear", "fear"),
        ("nauseated face", "disgust"),
        ("face vomiting", "disgust"),
        ("neutral face", "neutral"),
        ("expressionless face", "neutral"),
        ("face without mouth", "neutral"),
    ],
)
def test_face_names_are_labelled(name, emotion):
    assert emotion_for_name(name) == emotion


@pytest.mark.parametrize(
    "name",
    [
        "zany face",
        "money-mouth face",
        "nerd face",
        "cowboy hat face",
        "clown face",
        "sleeping face",
        "face with medical mask",
        "hot face",
        "cold face",
        "partying face",
        "smiling face with halo",
        "face blowing a kiss",
        "thinking face",
        "upside-down face",
        "confounded face",
        "flushed face",
        "worried face",
        "smirking face",
        "robot",
    ],
)
def test_ambiguous_faces_are_excluded(name):
    assert emotion_for_name(name) is None


@pytest.mark.parametrize("name", ["red apple", "thumbs up", "", "   ", "grinning face with a hat"])
def test_names_that_are_not_reviewed_faces_get_no_label(name):
    assert emotion_for_name(name) is None


def test_short_names_case_and_colons_are_accepted():
    assert emotion_for_name("GRINNING FACE") == "happiness"
    assert emotion_for_name(":sob:") == "sadness"
    assert emotion_for_name("crying_cat_face") == "sadness"
    assert emotion_for_name("face_with_symbols_on_mouth") == "anger"
    assert emotion_for_name("Face  Vomiting ") == "disgust"


def test_table_is_consistent():
    assert {row.emotion for row in FACE_TABLE} <= set(EMOTIONS) | {None}
    assert len({row.codepoints for row in FACE_TABLE}) == len(FACE_TABLE)
    assert len({row.short_name for row in FACE_TABLE}) == len(FACE_TABLE)
    for row in FACE_TABLE:
        assert row.emotion is not None or row.note, f"{row.short_name}: an exclusion must say why"
        assert emotion_for_name(row.short_name) == emotion_for_name(row.cldr_name) == row.emotion
    labelled = [row.emotion for row in FACE_TABLE if row.emotion]
    for emotion in EMOTIONS:
        assert labelled.count(emotion) >= 2, f"{emotion}: too few emoji to evaluate on"


def test_only_freely_licensed_sets_are_used():
    packages = {s.package for s in EMOJI_SETS}
    assert packages == {"emoji-datasource-twitter", "emoji-datasource-google", "openmoji"}
    assert not any("apple" in p or "facebook" in p for p in packages)


def _cached_tarballs_or_skip() -> None:
    missing = [s.tarball for s in EMOJI_SETS if not (DEFAULT_CACHE / s.tarball).is_file()]
    if missing:
        pytest.skip(
            f"npm tarballs not in {DEFAULT_CACHE} ({', '.join(missing)}); "
            "`make data` (python -m training.data.emoji) downloads them"
        )
    pytest.importorskip("resvg_py", reason="rendering the OpenMoji SVGs needs resvg-py")


def test_real_build_from_cached_tarballs(tmp_path, capsys):
    _cached_tarballs_or_skip()
    out = tmp_path / "emoji"
    frame = build(out, DEFAULT_CACHE)
    printed = capsys.readouterr().out
    assert "not in FACE_TABLE" not in printed, "a face emoji of these versions has not been reviewed:\n" + printed

    manifest = read_manifest(out / "manifest.csv")  # validates emotions, styles and that every file exists
    assert len(manifest) == len(frame) > 0
    assert set(manifest["source"]) == set(SOURCES)
    assert set(manifest["style"]) == {"cartoon"}
    assert set(manifest["emotion"]) == set(EMOTIONS)
    for column in ("intensity", "mouth", "eye", "brow", "cheek"):
        assert manifest[column].isna().all()

    # The same emoji has the same character id and label in every set, so it can be held out of all at once.
    labels = manifest.groupby("character")["emotion"].nunique()
    assert (labels == 1).all()
    per_source = {source: set(group["character"]) for source, group in manifest.groupby("source")}
    assert per_source["twemoji"] == per_source["noto"] == per_source["openmoji"]
    for row in manifest.itertuples():
        assert emotion_for_name(row.character) == row.emotion
        assert Path(row.path).parent.name == row.source and Path(row.path).stem == row.character

    for path in manifest["path"].iloc[:: max(1, len(manifest) // 20)]:
        with Image.open(path) as image:
            assert image.mode == "RGB" and image.size == (64, 64)
            pixels = np.asarray(image)
        assert tuple(pixels[0, 0]) == (255, 255, 255)  # transparent canvas composited on white

    attribution = (out / "ATTRIBUTION.md").read_text()
    for emoji_set in EMOJI_SETS:
        assert emoji_set.version in attribution and emoji_set.licence in attribution
    assert (out / "contact_sheet.png").is_file()
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind

    # A second build with nothing changed reuses the output.
    before = (out / "manifest.csv").stat().st_mtime_ns
    build(out, DEFAULT_CACHE)
    assert "up to date" in capsys.readouterr().out
    assert (out / "manifest.csv").stat().st_mtime_ns == before
