"""Tracking through cuts and crowds: multi-object-tracking metrics of the whole clip pipeline (decode → detect →
track → encode, through a real Triton) on synthetic clips with several characters and hard cuts, whose every box
and emotion is known (training/data/clips.py).

    python -m benchmarks.tracking [--clips 20] [--seconds 12]     # writes docs/results-tracking.md

Clips: test-split characters only (never seen in training), 2 or 3 characters each, every clip with at least one
cut (close-ups, group and wide shots, pans, passing occluders, textured backgrounds). Ground truth at each time the
pipeline sampled: every character at least half visible, with its drawn box and emotion.

Metrics (the standard definitions, at IoU ≥ 0.3 between a track's box and a character's drawn box: lenient, since
the generator's box and the detector's need not frame a face alike):
- IDF1: the share of detections matched to the right identity under the best one-to-one mapping of tracks to
  characters over the whole clip (Ristani et al. 2016);
- ID switches per character-minute: a character matched, frame by frame, to a different track than before
  (CLEAR MOT; a cut that ends a track and starts another for the same character counts as one);
- phantom tracks per clip: tracks that match no character for most of their observations;
- timeline agreement: over matched observations, how often the emotion the app shows is the drawn one, per
  character, averaged over characters.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from facecast.clips.tracking import box_iou
from facecast.config import PROJECT_ROOT
from facecast.media.video import CUT_THRESHOLD
from training.data.build import SPLITS

RESULTS_MD = PROJECT_ROOT / "docs" / "results-tracking.md"
IOU_MATCH = 0.3
MIN_VISIBLE = 0.5
CLIP_SEED = 880_000
CHECK_SEED = 990_000
TARGETS = {"idf1": 0.90, "switches_per_min": 0.5, "phantoms_per_clip": 0.1, "timeline": 0.90}


def evaluation_scripts(count: int, seconds: float, first_seed: int = CLIP_SEED) -> list:
    """`count` clip scripts of test-split characters, 2 and 3 characters alternately, each with at least one cut."""
    from training.data.clips import sample_clip_script

    first, end, _ = SPLITS["test"]
    characters = [f"c{i:05d}" for i in range(first, end)]
    scripts, seed = [], first_seed
    while len(scripts) < count:
        script = sample_clip_script(
            seed, character_ids=characters, duration_s=seconds, n_characters=2 + len(scripts) % 2
        )
        seed += 1
        if len(script.shots) >= 2:
            scripts.append(script)
    return scripts


@dataclass
class ClipScores:
    name: str
    characters: int
    cuts: int
    gt_detections: int
    track_detections: int
    idtp: int
    switches: int
    character_minutes: float
    tracks: int
    phantoms: int
    timeline: list[float]  # per character with any matched observation
    cut_rows: list[tuple[float, float, bool]] = field(default_factory=list)  # sampled_times_and_cuts()


def score_clip(name: str, script, times: list[float], observations) -> ClipScores:
    """Match the pipeline's observations to the script's truth at each time the pipeline sampled (`times`, which
    includes samples where it found no face: those count as misses)."""
    from training.data.clips import character_states

    by_time: dict[float, list] = {}
    for o in observations:
        by_time.setdefault(o.t_s, []).append(o)
    track_ids = sorted({o.track_id for o in observations})
    n_chars = len(script.characters)
    pair_counts = np.zeros((n_chars, len(track_ids)), np.int64)  # frames where character c and track k overlap
    track_index = {t: i for i, t in enumerate(track_ids)}
    matched_per_track = np.zeros(len(track_ids), np.int64)
    seen_per_track = np.zeros(len(track_ids), np.int64)
    gt_detections, switches = 0, 0
    last_track: dict[int, int] = {}
    agree: dict[int, list[bool]] = {}
    for t in times:
        truth = [s for s in character_states(script, t) if s.box is not None and s.visible_fraction >= MIN_VISIBLE]
        seen = by_time.get(t, [])
        gt_detections += len(truth)
        for o in seen:
            seen_per_track[track_index[o.track_id]] += 1
        if not truth or not seen:
            continue
        overlap = box_iou(np.array([s.box for s in truth]), np.array([o.box for o in seen]))
        for i, s in enumerate(truth):
            for j, o in enumerate(seen):
                if overlap[i, j] >= IOU_MATCH:
                    pair_counts[s.character_index, track_index[o.track_id]] += 1
        rows, cols = linear_sum_assignment(-overlap)
        for i, j in zip(rows, cols):
            if overlap[i, j] < IOU_MATCH:
                continue
            character, o = truth[i].character_index, seen[j]
            matched_per_track[track_index[o.track_id]] += 1
            if character in last_track and last_track[character] != o.track_id:
                switches += 1
            last_track[character] = o.track_id
            agree.setdefault(character, []).append(o.emotion == truth[i].emotion)
    # character-time: each sampled time a character was visible stands for the mean sampling step
    step = script.duration_s / max(1, len(times))
    visible_s = gt_detections * step
    rows, cols = linear_sum_assignment(-pair_counts) if track_ids else ([], [])
    idtp = int(sum(pair_counts[r, c] for r, c in zip(rows, cols)))
    phantoms = int(sum(1 for k in range(len(track_ids)) if matched_per_track[k] < 0.5 * seen_per_track[k]))
    return ClipScores(
        name=name,
        characters=n_chars,
        cuts=len(script.shots) - 1,
        gt_detections=gt_detections,
        track_detections=len(observations),
        idtp=idtp,
        switches=switches,
        character_minutes=visible_s / 60.0,
        tracks=len(track_ids),
        phantoms=phantoms,
        timeline=[float(np.mean(v)) for v in agree.values()],
    )


def summary(clips: list[ClipScores]) -> dict[str, float]:
    gt = sum(c.gt_detections for c in clips)
    predicted = sum(c.track_detections for c in clips)
    timelines = [v for c in clips for v in c.timeline]
    return {
        "idf1": 2 * sum(c.idtp for c in clips) / max(1, gt + predicted),
        "switches_per_min": sum(c.switches for c in clips) / max(1e-9, sum(c.character_minutes for c in clips)),
        "phantoms_per_clip": sum(c.phantoms for c in clips) / max(1, len(clips)),
        "timeline": float(np.mean(timelines)) if timelines else 0.0,
        "tracks_per_character": sum(c.tracks for c in clips) / max(1, sum(c.characters for c in clips)),
    }


def evaluate(
    urls: list[str], count: int, seconds: float, folder: Path, first_seed: int = CLIP_SEED, say=print
) -> list[ClipScores]:
    from facecast.clips.pipeline import ClipAnalyzer
    from training.data.clips import write_clip

    analyzer = ClipAnalyzer.for_urls(urls)
    results = []
    for i, script in enumerate(evaluation_scripts(count, seconds, first_seed)):
        path = write_clip(script, folder / f"tracking-{first_seed}-{i:02d}.mp4")
        analysis = analyzer.analyze(path)
        times, cut_rows = sampled_times_and_cuts(path, script, analyzer.options)
        scores = score_clip(path.name, script, times, analysis.observations)
        scores.cut_rows = cut_rows
        results.append(scores)
        say(
            f"[tracking] {path.name}: {scores.characters} characters, {scores.cuts} cuts → {scores.tracks} tracks, "
            f"{scores.switches} switches, {scores.phantoms} phantoms"
        )
    return results


def metric_rows(clips: list[ClipScores]) -> list[str]:
    totals = summary(clips)
    names = {
        "idf1": ("IDF1", "≥"),
        "switches_per_min": ("ID switches per character-minute", "≤"),
        "phantoms_per_clip": ("phantom tracks per clip", "≤"),
        "timeline": ("per-character timeline agreement", "≥"),
    }
    rows = []
    for key, (label, sense) in names.items():
        value, target = totals[key], TARGETS[key]
        met = value >= target if sense == "≥" else value <= target
        rows.append(f"| {label} | {value:.3f} | {sense} {target} | {'yes' if met else 'no'} |")
    return rows


def report(clips: list[ClipScores], check: list[ClipScores], seconds: float, elapsed_s: float) -> str:
    totals = summary(clips)
    per_clip = [
        f"| {c.name} | {c.characters} | {c.cuts} | {c.tracks} | {c.switches} | {c.phantoms} | "
        f"{2 * c.idtp / max(1, c.gt_detections + c.track_detections):.3f} | "
        f"{np.mean(c.timeline) if c.timeline else float('nan'):.3f} |"
        for c in clips
    ]
    cut_rows = [row for c in clips for row in c.cut_rows]
    at_cuts = np.array([(d, h) for d, h, cut in cut_rows if cut]).reshape(-1, 2)
    within = np.array([(d, h) for d, h, cut in cut_rows if not cut]).reshape(-1, 2)
    separation = (
        [
            f"| {label} | {at_cuts[:, k].min():.3f} | {np.percentile(at_cuts[:, k], 10):.3f} | "
            f"{np.percentile(within[:, k], 99):.3f} | {within[:, k].max():.3f} |"
            for k, label in enumerate(("cut score (facecast.media.video.cut_score)", "luma histogram distance"))
        ]
        if len(at_cuts) and len(within)
        else []
    )
    return "\n".join(
        [
            "# Tracking through cuts and crowds: results",
            "",
            f"Written by `python -m benchmarks.tracking --clips {len(clips)} --seconds {seconds:g}` "
            f"({elapsed_s / 60:.1f} min on this machine, 2 cores; the shipped models through a local CPU Triton). "
            "Clips: test-split characters only, 2–3 per clip, every clip with at least one cut (module docstring of "
            "benchmarks/tracking.py for the definitions).",
            "",
            f"{sum(c.characters for c in clips)} characters in {len(clips)} clips, "
            f"{sum(c.cuts for c in clips)} cuts; the pipeline made "
            f"{totals['tracks_per_character']:.2f} tracks per character.",
            "",
            "| metric | value | target (issue 14) | met |",
            "|---|---|---|---|",
            *metric_rows(clips),
            "",
            f"These clips (seeds from {CLIP_SEED}) were looked at while the tracker's cut and appearance handling was "
            f"built, so the same metrics on {len(check)} fresh clips (seeds from {CHECK_SEED}, never looked at):",
            "",
            "| metric | value | target (issue 14) | met |",
            "|---|---|---|---|",
            *metric_rows(check),
            "",
            "## Telling a cut from camera motion",
            "",
            f"Between consecutive sampled frames: {len(at_cuts)} pairs with a cut between them, {len(within)} without "
            "(pans, zooms, moving characters and occluders). A threshold separates them if the lowest value at a "
            "cut lies above the highest value without one.",
            "",
            "| statistic | lowest at a cut | 10th percentile at cuts | 99th percentile without | highest without |",
            "|---|---|---|---|---|",
            *separation,
            "",
            f"At CUT_THRESHOLD = {CUT_THRESHOLD} the sampler flags {int((at_cuts[:, 0] >= CUT_THRESHOLD).sum())} of "
            f"{len(at_cuts)} scripted cuts and {int((within[:, 0] >= CUT_THRESHOLD).sum())} of {len(within)} other "
            "pairs. Many scripted cuts here reframe one scene (wide to wide, one background) and change little of the "
            "picture; a cut missed there, or a false one, is left to the tracker's appearance matching.",
            "",
            "## Per clip",
            "",
            "| clip | characters | cuts | tracks | ID switches | phantoms | IDF1 | timeline |",
            "|---|---|---|---|---|---|---|---|",
            *per_clip,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=RESULTS_MD)
    args = parser.parse_args(argv)
    from facecast.serving import process

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facecast-tracking-") as temporary:
        folder = Path(temporary)
        with process.loopback_server(args.repository, folder / "run", timeout=180) as (settings, _):
            clips = evaluate([settings.triton_url], args.clips, args.seconds, folder)
            check = evaluate([settings.triton_url], args.clips, args.seconds, folder, first_seed=CHECK_SEED)
    text = report(clips, check, args.seconds, time.perf_counter() - started)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")


def sampled_times_and_cuts(path: Path, script, options) -> tuple[list[float], list[tuple[float, float, bool]]]:
    """One pass of the pipeline's sampler over the clip: the times it samples, and for each sampled frame after the
    first (the sampler's cut score, a luma-histogram distance, whether a cut lies since the previous sampled frame).
    The histogram distance is the alternative weighed: it ignores motion but also misses cuts between shots of one
    scene (same background, other framing)."""
    from facecast.media.video import sample_frames

    cuts = [shot.start for shot in script.shots[1:]]
    times: list[float] = []
    rows, previous = [], None
    for frame in sample_frames(
        path, base_rate_hz=options.base_rate_hz, max_rate_hz=options.max_rate_hz, max_long_side=options.max_long_side
    ):
        times.append(frame.t)
        luma = frame.image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        histogram = np.histogram(luma, bins=32, range=(0, 256))[0] / luma.size
        if previous is not None:
            p_t, p_hist = previous
            distance = float(0.5 * np.abs(histogram - p_hist).sum())
            rows.append((frame.cut_score, distance, any(p_t < c <= frame.t for c in cuts)))
        previous = (frame.t, histogram)
    return times, rows


if __name__ == "__main__":
    main()
