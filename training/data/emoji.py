"""Build the emoji face set: real, artist-drawn cartoon faces with emotion labels.

    python -m training.data.emoji --out data/emoji [--cache data/cache/npm] [--force]

Why emoji: they are the only freely licensed, professionally drawn stylized faces with an unambiguous name per
drawing, and three independent studios drew the same faces. That makes them a fair evaluation of whether a model
trained on synthetic characters reads real cartoon expressions, and the shared names let an evaluation hold one
emoji out of every set at once (column `character`).

Sets, fetched from the npm registry with `npm pack` at build time (the images are never committed):
    twemoji   emoji-datasource-twitter  Twemoji graphics, CC-BY 4.0       64-px PNGs + emoji.json
    noto      emoji-datasource-google   Noto Emoji, Apache-2.0            64-px PNGs + emoji.json
    openmoji  openmoji                  OpenMoji, CC BY-SA 4.0            SVGs only (rendered here) + openmoji.json
Apple and Facebook images are proprietary and are never used (emoji-datasource-apple/-facebook are not fetched).

Labels come from the emoji's NAME through FACE_TABLE below, not from a model: each face emoji (Unicode groups
"face-*" and "cat-face") has one row, labelled with one of the seven emotions or explicitly excluded with the
reason. Faces whose name or drawing does not say one of the seven emotions (kisses, tongues, costumes, illness,
sarcasm, mixed feelings) are excluded rather than guessed: a wrong label would corrupt the evaluation. The labels
were checked by eye against all three sets on the contact sheet this build writes (contact_sheet.png).

Each face is cropped to its drawing (the sets pad their canvases differently; a detector's face crop is tight),
composited on white and fitted to 64x64 by facecast.media.images, the same decoder serving uses, and saved as RGB PNG.
The output folder is written to a temporary folder and renamed into place, so an interrupted build leaves nothing
half-written; a finished build is skipped when its versions and table have not changed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from facecast.media.images import load_face
from facecast.vocab import EMOTIONS
from training.data.manifest import read_manifest, write_manifest

IMAGE_SIZE = 64
# Margin around the drawing's bounding box, as a fraction of the box side: a little room, like a detector crop.
CROP_MARGIN = 0.04
# OpenMoji ships 72-unit SVGs only; rendering at 4x and downscaling antialiases like the other sets' PNGs.
OPENMOJI_RENDER_PX = 288


class EmojiBuildError(RuntimeError):
    """The build cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class EmojiSet:
    source: str        # the manifest's `source` value
    package: str       # npm package
    version: str       # pinned; checked with `npm view` when chosen
    integrity: str     # the registry's sha512 of the tarball, so a corrupt or swapped cache is caught
    title: str
    licence: str
    licence_url: str
    credit: str

    @property
    def tarball(self) -> str:
        return f"{self.package}-{self.version}.tgz"


EMOJI_SETS: tuple[EmojiSet, ...] = (
    EmojiSet("twemoji", "emoji-datasource-twitter", "16.0.0",
             "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
             "Twemoji (jdecked/twemoji fork, via emoji-datasource-twitter)", "CC-BY 4.0",
             "https://creativecommons.org/licenses/by/4.0/",
             "Copyright 2019 Twitter, Inc and other contributors; graphics by Twitter and the Twemoji contributors"),
    EmojiSet("noto", "emoji-datasource-google", "16.0.0",
             "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
             "Noto Emoji (googlefonts/noto-emoji, via emoji-datasource-google)", "Apache-2.0",
             "https://www.apache.org/licenses/LICENSE-2.0", "Copyright Google Inc"),
    EmojiSet("openmoji", "openmoji", "17.0.0",
             "sha512-EBnYrNGdcdw+OSXmENeNE1yBNRu6tOraTmoOyUbJkTmvT/+XETp8RZLSJFzD3lrPc5N9CzsyPnRTk0Vp4UaI9w==",
             "OpenMoji (openmoji.org)", "CC BY-SA 4.0", "https://creativecommons.org/licenses/by-sa/4.0/",
             "OpenMoji - the open-source emoji and icon project; designed by the OpenMoji contributors (HfG Schwäbisch Gmünd)"),
)
SOURCES: tuple[str, ...] = tuple(s.source for s in EMOJI_SETS)


class FaceLabel(NamedTuple):
    codepoints: str          # Unicode code points without FE0F, as in the image file names
    short_name: str          # emoji-datasource short name: the `character` id shared by all sets
    cldr_name: str           # the CLDR name (OpenMoji's `annotation`)
    emotion: str | None      # one of EMOTIONS, or None = excluded
    note: str = ""           # why excluded, or what to know about the label
    aliases: tuple[str, ...] = ()   # older names people still use


E = FaceLabel
# Every face emoji of Unicode 16 (groups face-* and cat-face), in Unicode order. Rows with emotion None are
# reviewed and excluded on purpose; a face missing from this table is reported by the build and skipped.
FACE_TABLE: tuple[FaceLabel, ...] = (
    # face-smiling
    E("1F600", "grinning", "grinning face", "happiness"),
    E("1F603", "smiley", "grinning face with big eyes", "happiness", aliases=("smiling face with open mouth",)),
    E("1F604", "smile", "grinning face with smiling eyes", "happiness"),
    E("1F601", "grin", "beaming face with smiling eyes", "happiness"),
    E("1F606", "laughing", "grinning squinting face", "happiness"),
    E("1F605", "sweat_smile", "grinning face with sweat", None, "nervous relief: a grin with a cold-sweat drop"),
    E("1F923", "rolling_on_the_floor_laughing", "rolling on the floor laughing", "happiness", "drawn tilted"),
    E("1F602", "joy", "face with tears of joy", "happiness"),
    E("1F642", "slightly_smiling_face", "slightly smiling face", "happiness"),
    E("1F643", "upside_down_face", "upside-down face", None, "irony or silliness; drawn upside down"),
    E("1FAE0", "melting_face", "melting face", None, "embarrassment or dread; the face is melting away"),
    E("1F609", "wink", "winking face", "happiness", "a smile with one eye closed"),
    E("1F60A", "blush", "smiling face with smiling eyes", "happiness"),
    E("1F607", "innocent", "smiling face with halo", None, "the halo (innocence) is the message, not an emotion"),
    # face-affection: the smiling ones are happiness; kisses are none of the seven emotions
    E("1F970", "smiling_face_with_3_hearts", "smiling face with hearts", "happiness"),
    E("1F60D", "heart_eyes", "smiling face with heart-eyes", "happiness", "broad smile, eyes drawn as hearts"),
    E("1F929", "star-struck", "star-struck", "happiness", "broad grin, eyes drawn as stars"),
    E("1F618", "kissing_heart", "face blowing a kiss", None, "a kiss"),
    E("1F617", "kissing", "kissing face", None, "a kiss"),
    E("263A", "relaxed", "smiling face", "happiness"),
    E("1F61A", "kissing_closed_eyes", "kissing face with closed eyes", None, "a kiss"),
    E("1F619", "kissing_smiling_eyes", "kissing face with smiling eyes", None, "a kiss"),
    E("1F972", "smiling_face_with_tear", "smiling face with tear", None, "bittersweet: a smile and a tear"),
    # face-tongue
    E("1F60B", "yum", "face savoring food", None, "tongue out over food: taste, not an emotion"),
    E("1F61B", "stuck_out_tongue", "face with tongue", None, "playful tongue"),
    E("1F61C", "stuck_out_tongue_winking_eye", "winking face with tongue", None, "playful tongue"),
    E("1F92A", "zany_face", "zany face", None, "goofy"),
    E("1F61D", "stuck_out_tongue_closed_eyes", "squinting face with tongue", None, "playful tongue"),
    E("1F911", "money_mouth_face", "money-mouth face", None, "money, not an emotion"),
    # face-hand: hands cover the face and the meaning is a gesture
    E("1F917", "hugging_face", "smiling face with open hands", None, "a gesture (hug / jazz hands)"),
    E("1F92D", "face_with_hand_over_mouth", "face with hand over mouth", None, "giggle behind a hand"),
    E("1FAE2", "face_with_open_eyes_and_hand_over_mouth", "face with open eyes and hand over mouth", None,
      "shock or embarrassment; the hand hides the mouth"),
    E("1FAE3", "face_with_peeking_eye", "face with peeking eye", None, "hands over the face"),
    E("1F92B", "shushing_face", "shushing face", None, "a gesture"),
    E("1F914", "thinking_face", "thinking face", None, "thinking, not an emotion"),
    E("1FAE1", "saluting_face", "saluting face", None, "a gesture"),
    # face-neutral-skeptical
    E("1F910", "zipper_mouth_face", "zipper-mouth face", None, "a zipper, not an expression"),
    E("1F928", "face_with_raised_eyebrow", "face with raised eyebrow", None, "skepticism"),
    E("1F610", "neutral_face", "neutral face", "neutral"),
    E("1F611", "expressionless", "expressionless face", "neutral"),
    E("1F636", "no_mouth", "face without mouth", "neutral", "eyes only, no mouth"),
    E("1FAE5", "dotted_line_face", "dotted line face", None, "invisibility, drawn dotted"),
    E("1F636-200D-1F32B", "face_in_clouds", "face in clouds", None, "confusion; the face is hidden by clouds"),
    E("1F60F", "smirk", "smirking face", None, "smugness"),
    E("1F612", "unamused", "unamused face", None, "displeasure between anger, disgust and boredom"),
    E("1F644", "face_with_rolling_eyes", "face with rolling eyes", None, "contempt / exasperation"),
    E("1F62C", "grimacing", "grimacing face", None, "awkwardness"),
    E("1F62E-200D-1F4A8", "face_exhaling", "face exhaling", None, "a sigh"),
    E("1F925", "lying_face", "lying face", None, "a long nose"),
    E("1FAE8", "shaking_face", "shaking face", None, "motion lines; shock or cold"),
    E("1F642-200D-2194", "head_shaking_horizontally", "head shaking horizontally", None, "a gesture, motion blur"),
    E("1F642-200D-2195", "head_shaking_vertically", "head shaking vertically", None, "a gesture, motion blur"),
    # face-sleepy
    E("1F60C", "relieved", "relieved face", None, "relief: calm, content or smug"),
    E("1F614", "pensive", "pensive face", "sadness", "downcast closed eyes, slight frown"),
    E("1F62A", "sleepy", "sleepy face", None, "sleep"),
    E("1F924", "drooling_face", "drooling face", None, "drool"),
    E("1F634", "sleeping", "sleeping face", None, "sleep"),
    E("1FAE9", "face_with_bags_under_eyes", "face with bags under eyes", None, "tiredness"),
    # face-unwell: illness and temperature are not emotions, except the two disgust faces
    E("1F637", "mask", "face with medical mask", None, "the mouth is hidden"),
    E("1F912", "face_with_thermometer", "face with thermometer", None, "illness"),
    E("1F915", "face_with_head_bandage", "face with head-bandage", None, "injury"),
    E("1F922", "nauseated_face", "nauseated face", "disgust"),
    E("1F92E", "face_vomiting", "face vomiting", "disgust"),
    E("1F927", "sneezing_face", "sneezing face", None, "illness"),
    E("1F975", "hot_face", "hot face", None, "temperature"),
    E("1F976", "cold_face", "cold face", None, "temperature"),
    E("1F974", "woozy_face", "woozy face", None, "intoxication"),
    E("1F635", "dizzy_face", "face with crossed-out eyes", None, "knocked out"),
    E("1F635-200D-1F4AB", "face_with_spiral_eyes", "face with spiral eyes", None, "dizziness"),
    E("1F92F", "exploding_head", "exploding head", None, "shock, but the head is drawn exploding"),
    # face-hat, face-glasses: the accessory is the message
    E("1F920", "face_with_cowboy_hat", "cowboy hat face", None, "costume"),
    E("1F973", "partying_face", "partying face", None, "costume (party hat, horn)"),
    E("1F978", "disguised_face", "disguised face", None, "costume"),
    E("1F60E", "sunglasses", "smiling face with sunglasses", None, "coolness; the eyes are hidden"),
    E("1F913", "nerd_face", "nerd face", None, "costume"),
    E("1F9D0", "face_with_monocle", "face with monocle", None, "scrutiny; costume"),
    # face-concerned
    E("1F615", "confused", "confused face", None, "confusion"),
    E("1FAE4", "face_with_diagonal_mouth", "face with diagonal mouth", None, "skepticism or disappointment"),
    E("1F61F", "worried", "worried face", None, "between sadness and fear"),
    E("1F641", "slightly_frowning_face", "slightly frowning face", "sadness"),
    E("2639", "white_frowning_face", "frowning face", "sadness"),
    E("1F62E", "open_mouth", "face with open mouth", "surprise"),
    E("1F62F", "hushed", "hushed face", "surprise"),
    E("1F632", "astonished", "astonished face", "surprise"),
    E("1F633", "flushed", "flushed face", None,
      "wide eyes but closed mouth and blushing cheeks: embarrassment as much as surprise"),
    E("1FAEA", "distorted_face", "distorted face", None, "distorted drawing (OpenMoji only)"),
    E("1F97A", "pleading_face", "pleading face", None, "begging puppy eyes"),
    E("1F979", "face_holding_back_tears", "face holding back tears", None, "moved or sad: ambiguous"),
    E("1F626", "frowning", "frowning face with open mouth", None, "dismay: between sadness, fear and surprise"),
    E("1F627", "anguished", "anguished face", None, "distress: between fear and sadness"),
    E("1F628", "fearful", "fearful face", "fear"),
    E("1F630", "cold_sweat", "anxious face with sweat", "fear"),
    E("1F625", "disappointed_relieved", "sad but relieved face", "sadness", "drawn sad, with a tear or sweat drop"),
    E("1F622", "cry", "crying face", "sadness"),
    E("1F62D", "sob", "loudly crying face", "sadness"),
    E("1F631", "scream", "face screaming in fear", "fear"),
    E("1F616", "confounded", "confounded face", None, "frustration (scrunched eyes, zigzag mouth), not disgust"),
    E("1F623", "persevere", "persevering face", None, "strain"),
    E("1F61E", "disappointed", "disappointed face", "sadness"),
    E("1F613", "sweat", "downcast face with sweat", "sadness", "downcast eyes and frown, with a sweat drop"),
    E("1F629", "weary", "weary face", None, "despair or frustration: wailing with scrunched eyes"),
    E("1F62B", "tired_face", "tired face", None, "tiredness or frustration"),
    E("1F971", "yawning_face", "yawning face", None, "boredom; the hand covers the mouth"),
    # face-negative
    E("1F624", "triumph", "face with steam from nose", "anger", "furrowed brows and a huff of steam",
      aliases=("face with look of triumph",)),
    E("1F621", "rage", "enraged face", "anger", aliases=("pouting face",)),
    E("1F620", "angry", "angry face", "anger"),
    E("1F92C", "face_with_symbols_on_mouth", "face with symbols on mouth", "anger"),
    E("1F608", "smiling_imp", "smiling face with horns", None, "mischief"),
    E("1F47F", "imp", "angry face with horns", "anger", "a devil drawn with an angry face"),
    E("1F480", "skull", "skull", None, "not a living face"),
    E("2620", "skull_and_crossbones", "skull and crossbones", None, "not a living face"),
    # face-costume: creatures, not expressions
    E("1F4A9", "hankey", "pile of poo", None, "not a face expression"),
    E("1F921", "clown_face", "clown face", None, "costume"),
    E("1F479", "japanese_ogre", "ogre", None, "a mask"),
    E("1F47A", "japanese_goblin", "goblin", None, "a mask"),
    E("1F47B", "ghost", "ghost", None, "a creature"),
    E("1F47D", "alien", "alien", None, "a creature, no expression"),
    E("1F47E", "space_invader", "alien monster", None, "a game sprite"),
    E("1F916", "robot_face", "robot", None, "a creature"),
    # cat-face
    E("1F63A", "smiley_cat", "grinning cat", "happiness"),
    E("1F638", "smile_cat", "grinning cat with smiling eyes", "happiness"),
    E("1F639", "joy_cat", "cat with tears of joy", "happiness"),
    E("1F63B", "heart_eyes_cat", "smiling cat with heart-eyes", "happiness"),
    E("1F63C", "smirk_cat", "cat with wry smile", None, "smugness"),
    E("1F63D", "kissing_cat", "kissing cat", None, "a kiss"),
    E("1F640", "scream_cat", "weary cat", "fear",
      "named 'weary' by CLDR, but every set draws the cat version of 'face screaming in fear' (hands on cheeks)"),
    E("1F63F", "crying_cat_face", "crying cat", "sadness"),
    E("1F63E", "pouting_cat", "pouting cat", "anger"),
)
del E


def _normalise_name(name: str) -> str:
    return " ".join(name.strip().strip(":").lower().replace("_", " ").split())


def _normalise_codepoints(codepoints: str) -> str:
    # FE0F (emoji presentation selector) is present or absent depending on the set; it does not change the emoji.
    return "-".join(part for part in codepoints.upper().split("-") if part != "FE0F")


def _index_names(table: tuple[FaceLabel, ...]) -> dict[str, FaceLabel]:
    by_name: dict[str, FaceLabel] = {}
    for row in table:
        for name in (row.short_name, row.cldr_name, *row.aliases):
            key = _normalise_name(name)
            if by_name.get(key, row) is not row:
                raise AssertionError(f"FACE_TABLE: the name {name!r} is used by two rows")
            by_name[key] = row
    return by_name


_BY_NAME = _index_names(FACE_TABLE)


def face_label(name: str) -> FaceLabel | None:
    """The FACE_TABLE row of an emoji by short name, CLDR name or alias (any case, '_' or ' '), or None."""
    return _BY_NAME.get(_normalise_name(name))


def emotion_for_name(name: str) -> str | None:
    """The emotion label of a face emoji from its name, or None when it is excluded or not a reviewed face.

    Accepts the CLDR name ("grinning face"), the short name ("grinning", ":grinning:") or an older name listed as an
    alias ("pouting face"); case and underscores do not matter.
    """
    row = face_label(name)
    return row.emotion if row is not None else None


# --- fetching ---------------------------------------------------------------------------------------------------

def _sha512_integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def fetch_tarball(emoji_set: EmojiSet, cache: Path) -> Path:
    """The set's npm tarball in the cache, downloaded with `npm pack` unless already there (and intact)."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / emoji_set.tarball
    if target.is_file():
        if _sha512_integrity(target) == emoji_set.integrity:
            return target
        print(f"{target}: does not match the pinned checksum; downloading it again", file=sys.stderr)
        target.unlink()

    npm = shutil.which("npm")
    if npm is None:
        raise EmojiBuildError("npm was not found on PATH; it is needed to download the emoji sets from the npm "
                              "registry. Install Node.js and npm (Debian: apt-get install -y npm) or put the "
                              f"tarballs ({', '.join(s.tarball for s in EMOJI_SETS)}) into {cache}.")
    spec = f"{emoji_set.package}@{emoji_set.version}"
    print(f"downloading {spec} with npm pack ...", flush=True)
    env = dict(os.environ, npm_config_fund="false", npm_config_audit="false", npm_config_update_notifier="false")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".npm-pack-") as scratch:
        try:
            result = subprocess.run([npm, "pack", spec, "--ignore-scripts", "--loglevel=error"], cwd=scratch, env=env,
                                    capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise EmojiBuildError(f"npm pack {spec} took more than 15 minutes; is the npm registry reachable?") from None
        packed = Path(scratch) / emoji_set.tarball
        if result.returncode != 0 or not packed.is_file():
            # npm's first error lines say what failed (code, request); the rest is a stack trace.
            detail = [line for line in (result.stderr or result.stdout).splitlines()
                      if line.strip() and " at " not in line][:4]
            unreachable = any(code in (result.stderr or "") for code in
                              ("ENOTFOUND", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET", "EAI_AGAIN", "network"))
            hint = ("the npm registry could not be reached (no network, proxy or DNS problem)" if unreachable
                    else f"npm pack exited with status {result.returncode}")
            raise EmojiBuildError(f"could not download {spec}: {hint}.\n  " + "\n  ".join(detail))
        if _sha512_integrity(packed) != emoji_set.integrity:
            raise EmojiBuildError(f"{spec}: the downloaded tarball does not match the pinned sha512 checksum")
        packed.replace(target)
    return target


# --- extracting -------------------------------------------------------------------------------------------------

@dataclass
class Face:
    source: str
    label: FaceLabel
    rgba: Image.Image   # as drawn, transparent background, any size


def _is_face_group(group: str) -> bool:
    return group.startswith("face-") or group == "cat-face"


def _check_codepoints(source: str, name: str, codepoints: str, row: FaceLabel) -> None:
    if _normalise_codepoints(codepoints) != _normalise_codepoints(row.codepoints):
        raise EmojiBuildError(f"{source}: {name!r} is {codepoints} in the set but {row.codepoints} in FACE_TABLE; "
                              "the table must be fixed before the labels can be trusted")


def _stream_members(tarball: Path, wanted) -> dict[str, bytes]:
    """Read the members whose names `wanted(name)` accepts, in one sequential pass over the gzip stream."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, mode="r|gz") as archive:
            for member in archive:
                if member.isfile() and wanted(member.name):
                    found[member.name] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise EmojiBuildError(f"{tarball}: not a readable npm tarball ({error}); delete it and build again") from None
    return found


def _datasource_faces(emoji_set: EmojiSet, tarball: Path, image_set: str, unreviewed: list[str]) -> list[Face]:
    """Faces of an emoji-datasource-* package: emoji.json + img/<set>/64/<codepoints>.png."""
    folder = f"package/img/{image_set}/64/"
    # The images needed are known from the table, so only those are kept from the stream.
    wanted_pngs = {_normalise_codepoints(r.codepoints) for r in FACE_TABLE if r.emotion is not None}
    members = _stream_members(tarball, lambda name: name == "package/emoji.json" or (
        name.startswith(folder) and name.endswith(".png")
        and _normalise_codepoints(name[len(folder):-4]) in wanted_pngs))
    if "package/emoji.json" not in members:
        raise EmojiBuildError(f"{tarball}: has no emoji.json")
    faces = []
    for entry in json.loads(members["package/emoji.json"]):
        if entry.get("category") != "Smileys & Emotion" or not _is_face_group(entry.get("subcategory", "")):
            continue
        row = face_label(entry["short_name"])
        if row is None:
            unreviewed.append(f"{emoji_set.source}: {entry['short_name']} ({entry.get('name', '').lower()})")
            continue
        _check_codepoints(emoji_set.source, entry["short_name"], entry["unified"], row)
        if row.emotion is None or not entry.get(f"has_img_{image_set}", False):
            continue
        data = members.get(folder + entry["image"])
        if data is None:
            raise EmojiBuildError(f"{tarball}: image {folder + entry['image']} listed in emoji.json is missing")
        faces.append(Face(emoji_set.source, row, Image.open(io.BytesIO(data)).convert("RGBA")))
    return faces


def _render_svg(svg: bytes, size: int) -> Image.Image:
    try:
        import resvg_py
    except ImportError:
        raise EmojiBuildError("OpenMoji ships its colour images as SVG only; rendering them needs the Python "
                              "package resvg-py (pip install resvg-py==0.5.0)") from None
    png = resvg_py.svg_to_bytes(svg_string=svg.decode("utf-8"), width=size, height=size)
    return Image.open(io.BytesIO(bytes(png))).convert("RGBA")


def _openmoji_faces(emoji_set: EmojiSet, tarball: Path, unreviewed: list[str]) -> list[Face]:
    """Faces of the openmoji package: data/openmoji.json + color/svg/<HEXCODE>.svg (rendered here)."""
    # The SVGs needed are known from the table, so only those are kept from the stream.
    wanted_svgs = {_normalise_codepoints(r.codepoints) for r in FACE_TABLE if r.emotion is not None}
    members = _stream_members(tarball, lambda name: name == "package/data/openmoji.json" or (
        name.startswith("package/color/svg/") and name.endswith(".svg")
        and _normalise_codepoints(name.rsplit("/", 1)[1][:-4]) in wanted_svgs))
    if "package/data/openmoji.json" not in members:
        raise EmojiBuildError(f"{tarball}: has no data/openmoji.json")
    svgs = {_normalise_codepoints(name.rsplit("/", 1)[1][:-4]): data
            for name, data in members.items() if name.endswith(".svg")}
    faces = []
    for entry in json.loads(members["package/data/openmoji.json"]):
        if entry.get("group") != "smileys-emotion" or not _is_face_group(entry.get("subgroups", "")):
            continue
        if entry.get("skintone"):
            continue  # skin-tone variants repeat a base face (face emoji have none; kept for safety)
        row = face_label(entry["annotation"])
        if row is None:
            unreviewed.append(f"{emoji_set.source}: {entry['annotation']} ({entry['hexcode']})")
            continue
        _check_codepoints(emoji_set.source, entry["annotation"], entry["hexcode"], row)
        if row.emotion is None:
            continue
        svg = svgs.get(_normalise_codepoints(entry["hexcode"]))
        if svg is None:
            raise EmojiBuildError(f"{tarball}: color/svg/{entry['hexcode']}.svg listed in openmoji.json is missing")
        faces.append(Face(emoji_set.source, row, _render_svg(svg, OPENMOJI_RENDER_PX)))
    return faces


def crop_to_drawing(rgba: Image.Image, margin: float = CROP_MARGIN) -> Image.Image:
    """A square crop around the drawn (non-transparent) pixels, centred, with a small margin.

    The sets pad their canvases differently (OpenMoji leaves ~15% on each side, Twemoji none); left alone, the
    framing alone would tell the sets apart, and it would not look like a detector's tight face crop.
    """
    alpha = np.asarray(rgba.getchannel("A"))
    rows = np.flatnonzero((alpha > 16).any(axis=1))
    cols = np.flatnonzero((alpha > 16).any(axis=0))
    if rows.size == 0:
        return rgba
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left) * (1 + 2 * margin)
    centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
    box = tuple(round(v) for v in (centre_x - side / 2, centre_y - side / 2, centre_x + side / 2, centre_y + side / 2))
    return rgba.crop(box)  # outside the canvas Pillow fills transparent, which becomes white


def face_pixels(face: Face, size: int = IMAGE_SIZE) -> np.ndarray:
    """The face as the network will see it: cropped, composited on white and fitted by facecast.media.images."""
    buffer = io.BytesIO()
    crop_to_drawing(face.rgba).save(buffer, format="PNG")
    return load_face(buffer.getvalue(), size)


# --- writing ----------------------------------------------------------------------------------------------------

def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def write_contact_sheet(frame: pd.DataFrame, path: Path) -> None:
    """One block per emotion, one column per emoji with its three drawings side by side and its name below."""
    cell_width, image_size, label_height, heading_height, columns = 3 * 66 + 6, 64, 16, 22, 7
    font, heading_font = _font(11), _font(15)
    blocks = []
    for emotion in EMOTIONS:
        characters = list(dict.fromkeys(frame.loc[frame["emotion"] == emotion, "character"]))
        if characters:
            blocks.append((emotion, characters))
    height = sum(heading_height + -(-len(c) // columns) * (image_size + label_height + 6) for _, c in blocks)
    sheet = Image.new("RGB", (columns * cell_width, max(height, 1)), "white")
    draw = ImageDraw.Draw(sheet)
    paths = {(row.source, row.character): row.path for row in frame.itertuples()}
    y = 0
    for emotion, characters in blocks:
        draw.text((4, y + 3), f"{emotion} ({len(characters)})", fill=(160, 0, 0), font=heading_font)
        y += heading_height
        for index, character in enumerate(characters):
            x = (index % columns) * cell_width
            row_y = y + (index // columns) * (image_size + label_height + 6)
            for slot, source in enumerate(SOURCES):
                if (source, character) in paths:
                    with Image.open(paths[source, character]) as image:
                        sheet.paste(image.convert("RGB"), (x + slot * 66, row_y))
            draw.text((x + 2, row_y + image_size + 2), character[:34], fill="black", font=font)
        y += -(-len(characters) // columns) * (image_size + label_height + 6)
    sheet.save(path)


def _attribution(sets: list[EmojiSet], counts: pd.DataFrame) -> str:
    lines = [
        "# Attribution of the emoji face images",
        "",
        "The images in this folder are modified copies of emoji from the sets below: cropped to the drawing,",
        f"composited on white and resized to {IMAGE_SIZE}x{IMAGE_SIZE} pixels (OpenMoji: rendered from SVG first). "
        "They are used to train",
        "and evaluate facial-expression models. Each set keeps its own licence; the OpenMoji images, as",
        "adaptations, are shared under CC BY-SA 4.0. Built by `python -m training.data.emoji`.",
        "",
        "| folder | set | npm package | version | licence | images |",
        "|---|---|---|---|---|---|",
    ]
    for emoji_set in sets:
        lines.append(f"| {emoji_set.source}/ | {emoji_set.title} | {emoji_set.package} | {emoji_set.version} | "
                     f"[{emoji_set.licence}]({emoji_set.licence_url}) | {int(counts.get(emoji_set.source, 0))} |")
    lines.append("")
    for emoji_set in sets:
        lines.append(f"- **{emoji_set.title}**, {emoji_set.licence} ({emoji_set.licence_url}). {emoji_set.credit}.")
    lines += ["",
              "The emoji metadata (names, categories) comes from emoji-datasource (MIT, Cal Henderson) and the "
              "OpenMoji data files.",
              "Apple and Facebook emoji images are proprietary and are not used.", ""]
    return "\n".join(lines)


def _stamp(sets: list[EmojiSet]) -> dict:
    """What a finished build depends on: when it is unchanged, the build is skipped."""
    table = json.dumps([list(r) for r in FACE_TABLE], sort_keys=True).encode()
    return {"sets": {s.source: f"{s.package}@{s.version}" for s in sets},
            "table_sha256": hashlib.sha256(table).hexdigest(), "image_size": IMAGE_SIZE,
            "crop_margin": CROP_MARGIN, "openmoji_render_px": OPENMOJI_RENDER_PX}


def count_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Images per source (rows) and emotion (columns, in EMOTIONS order), with totals."""
    counts = pd.crosstab(frame["source"], frame["emotion"]).reindex(columns=list(EMOTIONS), fill_value=0)
    counts = counts.reindex([s for s in SOURCES if s in counts.index] + sorted(set(counts.index) - set(SOURCES)))
    counts["total"] = counts.sum(axis=1)
    counts.loc["all"] = counts.sum(axis=0)
    return counts


def build(out: Path, cache: Path, *, sources: tuple[str, ...] = SOURCES, force: bool = False) -> pd.DataFrame:
    """Build (or reuse) the emoji face set in `out`; returns the manifest rows."""
    out, cache = Path(out), Path(cache)
    sets = [s for s in EMOJI_SETS if s.source in sources]
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise EmojiBuildError(f"unknown source(s) {', '.join(sorted(unknown))}; choose from {', '.join(SOURCES)}")
    stamp = _stamp(sets)
    stamp_file, manifest_file = out / "build.json", out / "manifest.csv"
    if not force and stamp_file.is_file() and manifest_file.is_file():
        try:
            if json.loads(stamp_file.read_text()) == stamp:
                print(f"{out}: up to date (delete it or pass --force to rebuild)\n")
                frame = read_manifest(manifest_file)
                print(count_table(frame).to_string())
                return frame
        except (json.JSONDecodeError, OSError):
            pass  # an unreadable stamp means: build again

    tarballs = {s.source: fetch_tarball(s, cache) for s in sets}
    unreviewed: list[str] = []
    faces: list[Face] = []
    for emoji_set in sets:
        if emoji_set.source == "openmoji":
            faces += _openmoji_faces(emoji_set, tarballs[emoji_set.source], unreviewed)
        else:
            image_set = {"twemoji": "twitter", "noto": "google"}[emoji_set.source]
            faces += _datasource_faces(emoji_set, tarballs[emoji_set.source], image_set, unreviewed)

    out.parent.mkdir(parents=True, exist_ok=True)
    building = out.parent / f".{out.name}.building"
    if building.exists():
        shutil.rmtree(building)  # left by an interrupted build
    building.mkdir()
    rows = []
    for face in faces:
        path = building / face.source / f"{face.label.short_name}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(face_pixels(face)).save(path, optimize=True)
        rows.append({"path": str(path), "emotion": face.label.emotion, "style": "cartoon",
                     "character": face.label.short_name, "source": face.source})
    frame = pd.DataFrame(rows, columns=["path", "emotion", "style", "character", "source"])
    order = pd.DataFrame({"source": frame["source"].map(SOURCES.index), "emotion": frame["emotion"].map(EMOTIONS.index),
                          "character": frame["character"]})
    frame = frame.loc[order.sort_values(["source", "emotion", "character"]).index].reset_index(drop=True)
    write_manifest(frame, building / "manifest.csv")
    counts = count_table(frame)
    (building / "ATTRIBUTION.md").write_text(_attribution(sets, counts["total"]), encoding="utf-8")
    write_contact_sheet(frame, building / "contact_sheet.png")
    (building / "build.json").write_text(json.dumps(stamp, indent=2) + "\n")

    # Swap the finished folder into place; the old one is removed only once the new one is there.
    previous = out.parent / f".{out.name}.previous"
    if previous.exists():
        shutil.rmtree(previous)
    if out.exists():
        out.rename(previous)
    building.rename(out)
    if previous.exists():
        shutil.rmtree(previous)

    if unreviewed:
        print("skipped, not in FACE_TABLE (review and add them):\n  " + "\n  ".join(unreviewed))
    print(f"wrote {len(frame)} faces to {out}\n")
    print(counts.to_string())
    return read_manifest(out / "manifest.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.emoji", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/emoji"), help="output folder (default: data/emoji)")
    parser.add_argument("--cache", type=Path, default=Path("data/cache/npm"),
                        help="where the npm tarballs are kept (default: data/cache/npm)")
    parser.add_argument("--sources", default=",".join(SOURCES),
                        help=f"comma-separated subset of {','.join(SOURCES)} (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the output is up to date")
    args = parser.parse_args(argv)
    try:
        build(args.out, args.cache, sources=tuple(s.strip() for s in args.sources.split(",") if s.strip()),
              force=args.force)
    except EmojiBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
