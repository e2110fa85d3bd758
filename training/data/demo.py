"""Demo content for a fresh install (`make demo`, part of `make run`): things to try in the app right away.

    python -m training.data.demo [--out var/demo]                 # demo faces only (no server needed)
    python -m training.data.demo --clips --library [--db FILE]    # + analysed demo clips and a demo library
                                                                  #   (needs the running Triton: `make run` order)

* faces: one synthetic character face per emotion × style in <out>/faces/, deterministic, in about a second.
  These are characters from the test split's id range, so the shipped model never trained on them.
* style sets: a few held-out faces drawn in all four styles in the same scene (training/data/style_pairs.py, test
  split) in <out>/style_sets/: the Style mapping page shows each drawing beside the mapper's, the ground truth.
* --clips: three short synthetic trailer cuts (two cuts of one scene and a different scene; 640×360) rendered to
  <out>/clips/, analysed through the running Triton and stored in the DuckDB store, so History and Compare cuts
  have content. Clips already analysed (same content, same pipeline fingerprint) are skipped.
* --library: the demo faces, the licensed emoji of data/emoji (when `make emoji` fetched them; with their labels)
  and the key-moment faces of the demo clips, added to the expression library. Content already there is skipped.

Idempotent: a second run renders and analyses nothing new.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from facecast.config import PROJECT_ROOT, load_settings
from facecast.vocab import EMOTIONS, STYLES
from training.data.synthetic import sample_still

DEMO_SIZE = 192
FIRST_DEMO_CHARACTER = 1400  # inside the held-out test range of training/data/build.py
# Two cuts of one scene (same characters, different length and arcs) and a different scene: what Compare cuts is for.
DEMO_CLIPS = (("trailer-cut-a", 9101, 8.0), ("trailer-cut-b", 9102, 6.0), ("teaser", 9103, 5.0))
DEMO_CHARACTERS = ("c01450", "c01451")
EMOJI_MANIFEST = PROJECT_ROOT / "data" / "emoji" / "manifest.csv"


def build_demo(out: Path) -> Path:
    faces = out / "faces"
    faces.mkdir(parents=True, exist_ok=True)
    labels = ["path,emotion,style,character"]
    for style_index, style in enumerate(STYLES):
        for emotion_index, emotion in enumerate(EMOTIONS):
            target = faces / f"{style}-{emotion}.png"
            character = f"c{FIRST_DEMO_CHARACTER + 7 * style_index + emotion_index:05d}"
            labels.append(f"{target.name},{emotion},{style},{character}")
            if target.is_file():
                continue
            seed = 10_000 * (style_index + 1) + emotion_index
            image, _ = sample_still(seed, size=DEMO_SIZE, style=style, emotion=emotion, character_id=character)
            tmp = target.with_suffix(".tmp")
            image.save(tmp, format="PNG")
            tmp.replace(target)
    (faces / "labels.csv").write_text("\n".join(labels) + "\n")  # what each face was drawn as: library labels
    return faces


# Test-split style sets for the Style mapping page: humans, fantasy characters and an emoji-like face among them
# (set numbers of training/data/style_pairs.py, split "test", so the shipped mapper never trained on them).
DEMO_STYLE_SETS = (0, 1, 2, 3, 5, 8)


def build_demo_style_sets(out: Path) -> Path:
    """<out>/style_sets/set-NNN/<style>.png, one face drawn in every style, plus labels.csv (emotion per set)."""
    from PIL import Image

    from training.data.style_pairs import style_set

    folder = out / "style_sets"
    folder.mkdir(parents=True, exist_ok=True)
    labels = ["set,emotion,character"]
    for index in DEMO_STYLE_SETS:
        target = folder / f"set-{index:03d}"
        drawn = style_set("test", index, 128)
        emotion = EMOTIONS[int(drawn["emotions"][0])]
        labels.append(f"{target.name},{emotion},c{int(drawn['character']):05d}")
        if target.is_dir():
            continue
        tmp = folder / f".{target.name}.tmp"
        tmp.mkdir(exist_ok=True)
        for row, style in enumerate(STYLES):
            Image.fromarray(drawn["images"][row]).save(tmp / f"{style}.png", format="PNG")
        tmp.rename(target)  # a set is there whole or not at all
    (folder / "labels.csv").write_text("\n".join(labels) + "\n")
    return folder


def build_demo_clips(out: Path) -> list[Path]:
    """Render the demo clips (skipping those on disk) to <out>/clips/."""
    from training.data.clips import sample_clip_script, write_clip

    folder = out / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, seed, seconds in DEMO_CLIPS:
        path = folder / f"{name}.mp4"
        if not path.is_file():
            characters = DEMO_CHARACTERS if name.startswith("trailer") else None
            script = sample_clip_script(seed, character_ids=list(characters) if characters else None,
                                        duration_s=seconds, n_characters=2, width=640, height=360, fps=12.0)
            tmp = path.with_name(f".{path.name}.tmp.mp4")
            write_clip(script, tmp, width=640, height=360)
            tmp.replace(path)
        paths.append(path)
    return paths


def analyse_demo_clips(paths: list[Path], store, urls: list[str], say=print) -> list[int]:
    """Analyse and store each clip unless this content was analysed with the same pipeline; returns analysis ids."""
    from facecast.clips.pipeline import ClipAnalyzer, file_sha256

    analyzer = ClipAnalyzer.for_urls(urls)
    engagement_model = store.engagement_models.active().provenance  # the version the app would score with
    fingerprint = analyzer.fingerprint(engagement_model["version"])
    ids = []
    for path in paths:
        digest = file_sha256(path)
        stored = store.analyses.find(digest, fingerprint)
        if stored is not None:
            say(f"[demo] {path.name}: already analysed (analysis {stored.id})")
            ids.append(stored.id)
            continue
        started = time.perf_counter()
        analysis = analyzer.analyze(path, sha256=digest, engagement_model=engagement_model)
        ids.append(store.analyses.add(analysis.record()))
        say(f"[demo] {path.name}: analysed in {time.perf_counter() - started:.1f} s → analysis {ids[-1]}: "
            f"{analysis.report.message}")
    return ids


def build_demo_library(faces: Path, analysis_ids: list[int], store, urls: list[str], say=print) -> dict:
    """Demo faces + licensed emoji (with their manifest labels) + the demo clips' key-moment faces."""
    from facecast.clients.embedders import Embedders
    from facecast.library import Library

    library = Library(store, Embedders.for_urls(urls), use_gpu=False)
    added = duplicates = 0
    report = library.add_images([faces], labels=faces / "labels.csv", source="demo")
    added, duplicates = added + len(report.added), duplicates + len(report.duplicates)
    if EMOJI_MANIFEST.is_file():
        report = library.add_manifest(EMOJI_MANIFEST)
        added, duplicates = added + len(report.added), duplicates + len(report.duplicates)
    else:
        say(f"[demo] {EMOJI_MANIFEST} missing (`make emoji` fetches the licensed emoji): library without emoji")
    for analysis_id in analysis_ids:
        report = library.add_from_analysis(analysis_id)
        added, duplicates = added + len(report.added), duplicates + len(report.duplicates)
    stats = library.stats()
    say(f"[demo] library: {added} added, {duplicates} already there; {stats['items']} expressions in all")
    return stats


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=settings.demo_dir)
    parser.add_argument("--clips", action="store_true", help="render, analyse and store the demo clips (needs Triton)")
    parser.add_argument("--library", action="store_true", help="fill the expression library (needs Triton)")
    parser.add_argument("--db", type=Path, default=settings.db_path, help="DuckDB store (default: FACECAST_DB)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    faces = build_demo(args.out)
    print(f"[demo] {len(list(faces.glob('*.png')))} demo faces in {faces}", flush=True)
    style_sets = build_demo_style_sets(args.out)
    print(f"[demo] {len(DEMO_STYLE_SETS)} faces drawn in every style in {style_sets}", flush=True)
    if not (args.clips or args.library):
        return 0
    from facecast.store import StoreError, open_store
    from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable

    urls = [settings.triton_url]
    try:
        with open_store(args.db) as store:
            analysis_ids: list[int] = []
            if args.clips:
                paths = build_demo_clips(args.out)
                print(f"[demo] {len(paths)} demo clips in {args.out / 'clips'}", flush=True)
                analysis_ids = analyse_demo_clips(paths, store, urls,
                                                  say=lambda text: print(text, flush=True))
            if args.library:
                build_demo_library(faces, analysis_ids, store, urls, say=lambda text: print(text, flush=True))
    except (TritonUnavailable, ModelUnavailable, InferenceFailed) as error:
        print(f"[demo] error: {error}", file=sys.stderr)
        return 1
    except StoreError as error:
        print(f"[demo] error: {error}", file=sys.stderr)
        return 1
    print(f"[demo] ready in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
