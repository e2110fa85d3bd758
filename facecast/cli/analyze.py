"""`facecast analyze`: engagement reports of trailer cuts, each stored whole or not at all."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from facecast.cli import options
from facecast.cli.exits import EXIT_INTERRUPTED, outcome
from facecast.clips.report import EngagementReport, Scored
from facecast.config import Settings
from facecast.vocab import AUDIENCE_GROUPS

if TYPE_CHECKING:
    from facecast.store import Store


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clips", nargs="+", type=Path, help="video files (mp4, mov, webm, mkv, gif)")
    options.json_output(parser, "one JSON document (a list of reports) on stdout")
    parser.add_argument("--thumbnails", action="store_true", help="with --json: include key-moment thumbnails")
    parser.add_argument("--force", action="store_true", help="analyse again even if this content was analysed")
    parser.add_argument("--no-store", action="store_true", help="do not record the reports")
    options.store(parser)
    options.triton(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.clips.pipeline import ClipAnalyzer, file_sha256
    from facecast.media.video import MediaError
    from facecast.serving.errors import InferenceFailed
    from facecast.store import open_store

    analyzer = ClipAnalyzer.for_urls(options.triton_urls(args, settings))
    store = None if args.no_store else open_store(settings.db_path)
    engagement_model = _active_engagement_model(store, settings)
    # fails fast when Triton or a model is missing
    fingerprint = analyzer.fingerprint(engagement_model["version"])
    reports, failed = [], 0
    cancel = threading.Event()
    try:
        for path in args.clips:
            if not path.is_file():
                problem = "is a folder, not a clip" if path.is_dir() else "no such file"
                print(f"facecast analyze: error: {path}: {problem}", file=sys.stderr)
                failed += 1
                continue
            digest = file_sha256(path)
            stored = store.analyses.find(digest, fingerprint) if store and not args.force else None
            if stored is not None:
                report = EngagementReport.from_dict(json.loads(stored.report_json))
                print(
                    f"{path}: already analysed (analysis {stored.id}, {stored.created_at:%Y-%m-%d %H:%M} UTC); "
                    "showing the stored report (--force analyses again)",
                    file=sys.stderr,
                )
            else:
                try:
                    with _ProgressBar(path.name, disabled=args.quiet) as update:
                        analysis = analyzer.analyze(
                            path, sha256=digest, progress=update, cancel=cancel, engagement_model=engagement_model
                        )
                except MediaError as error:
                    print(f"facecast analyze: error: {error}", file=sys.stderr)
                    failed += 1
                    continue
                except InferenceFailed as error:
                    print(f"facecast analyze: error: {path}: {error}", file=sys.stderr)
                    failed += 1
                    continue
                report = analysis.report
                if store is not None:
                    store.analyses.add(analysis.record(analysed_by=f"cli:{getpass.getuser()}"))
            reports.append(report)
            if not args.json:
                print_report(report)
    except KeyboardInterrupt:
        cancel.set()
        print("facecast analyze: interrupted; the clip in progress was not stored", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(json.dumps([r.as_dict(thumbnails=args.thumbnails) for r in reports], indent=2))
    return outcome(len(reports), failed)


def _active_engagement_model(store: Store | None, settings: Settings) -> dict:
    """The engagement version that serves (the store's active one; with --no-store, read from the store when one
    exists, so the CLI and the app never score with different models)."""
    from facecast.clips.pipeline import DEFAULT_ENGAGEMENT_MODEL
    from facecast.store import open_store

    if store is not None:
        return store.engagement_models.active().provenance
    if not Path(settings.db_path).is_file():
        return dict(DEFAULT_ENGAGEMENT_MODEL)
    with open_store(settings.db_path, read_only=True) as existing:
        return existing.engagement_models.active().provenance


class _ProgressBar:
    """A tqdm bar on stderr over the fraction of the clip decoded (percent); the other stages follow within 32 s."""

    def __init__(self, name: str, disabled: bool):
        self.name, self.disabled = name, disabled

    def __enter__(self) -> Callable[[str, float], None]:
        from tqdm import tqdm

        self.bar = tqdm(
            total=100,
            desc=self.name,
            unit="%",
            disable=self.disabled,
            file=sys.stderr,
            leave=False,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
        )

        def update(stage: str, fraction: float) -> None:
            if stage == "decode":  # the stream the other stages follow, and the smoothest of them
                self.bar.update(max(0.0, 100 * fraction - self.bar.n))

        return update

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()


def print_report(report: EngagementReport) -> None:
    clip = report.clip
    print(f"{clip.name}  ({clip.duration_s:.1f} s, {clip.width}x{clip.height}, {clip.codec})")
    print(f"  {report.provenance}")
    if not report.faces_found:
        print("  no faces found: no engagement prediction")
    else:

        def scored(s: Scored | None) -> str:
            return "-" if s is None else f"{s.value:.2f} [{s.low:.2f}, {s.high:.2f}]"

        classes = ", ".join(f"{k} {v:.0%}" for k, v in report.class_probabilities.items())
        print(f"  engagement    {scored(report.engagement)}  class {report.engagement_class} ({classes})")
        print(f"  resonance     {scored(report.resonance)}")
        print(f"  shareability  {scored(report.shareability)}")
        print("  appeal        " + "  ".join(f"{g} {report.appeal[g].value:.2f}" for g in AUDIENCE_GROUPS))
        print(f"  per second    {sparkline([p.value for p in report.curve])}")
        for character in report.characters:
            timeline = ", ".join(f"{s.emotion} {s.start_s:.1f}–{s.end_s:.1f}s" for s in character.timeline[:6])
            more = f" (+{len(character.timeline) - 6} more)" if len(character.timeline) > 6 else ""
            print(
                f"  character {character.track_id}: {character.style}, on screen {character.screen_time_s:.1f} s, "
                f"mostly {character.dominant_emotion}: {timeline}{more}"
            )
        for moment in report.key_moments:
            print(
                f"  key moment {moment.t_s:6.2f} s: character {moment.track_id} {moment.emotion} "
                f"({moment.confidence:.0%}), weight {moment.weight:.2f}"
            )
    for note in report.notes:
        print(f"  note: {note}")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in report.timings_s.items() if k not in ("total", "realtime_factor"))
    print(
        f"  {report.counts.get('frames_sampled', 0)} frames sampled, {report.counts.get('faces_encoded', 0)} faces; "
        f"{report.timings_s.get('total', 0):.2f} s ({report.timings_s.get('realtime_factor', 0):.1f}× real time: "
        f"{timings})"
    )


def sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    return "".join(bars[min(len(bars) - 1, int(v * len(bars)))] for v in values[:120])
