"""The `facecast` command line: `python -m facecast <command> ...` or the `facecast` console script.

Each subcommand is two functions, `_<name>_arguments(parser)` and `cmd_<name>(args, settings) -> exit code`,
registered in COMMANDS below; adding one (e.g. `classify`) means writing those two and adding one line there.

Errors the user can act on (server env missing, port in use, a model that fails to load, a timeout) are raised as
facecast.serving.errors.TritonServerError and printed as one line on stderr with a non-zero exit code, never as
a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facecast import __version__
from facecast.config import Settings, load_settings

EXIT_OK = 0
EXIT_ERROR = 1  # a TritonServerError: one line on stderr
EXIT_PARTIAL = 2  # `classify`: some files could not be classified (each says why)
EXIT_NOT_READY = 3  # `status`: no server, or not ready (like `systemctl status` for a stopped unit)
EXIT_INTERRUPTED = 130


# ------------------------------------------------------------------------------------------ shared options


def _add_port_options(parser: argparse.ArgumentParser, *, identifies_by_http_port: bool = False) -> None:
    # stop/status accept all three so the same flags work for every command; the HTTP port names the server.
    note = " (the HTTP port identifies the server)" if identifies_by_http_port else ""
    parser.add_argument("--http-port", type=int, help=f"Triton HTTP port (default: FACECAST_HTTP_PORT or 8000){note}")
    parser.add_argument("--grpc-port", type=int, help="Triton gRPC port (default: FACECAST_GRPC_PORT or 8001)")
    parser.add_argument("--metrics-port", type=int, help="Triton metrics port (default: FACECAST_METRICS_PORT or 8002)")


def _settings_from_args(settings: Settings, args: argparse.Namespace) -> Settings:
    """Flags override environment variables, which override defaults (see facecast.config)."""
    return settings.with_overrides(
        http_port=getattr(args, "http_port", None),
        grpc_port=getattr(args, "grpc_port", None),
        metrics_port=getattr(args, "metrics_port", None),
        model_repository=getattr(args, "model_repository", None),
    )


# --------------------------------------------------------------------------------------------------- serve


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach", action="store_true", help="return once the server is ready; it keeps running (stop: facecast stop)"
    )
    _add_port_options(parser)
    parser.add_argument(
        "--model-repository",
        type=lambda value: Path(value).expanduser().resolve(),
        help="Triton model repository (default: FACECAST_MODEL_REPOSITORY or ./model_repository)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait until ready (default 120)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="if facecast's own server already runs on these ports with this repository, use it (exit 0)",
    )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.serving import errors
    from facecast.serving import health
    from facecast.serving import process

    timeout = args.timeout if args.timeout is not None else health.DEFAULT_START_TIMEOUT_S
    if not args.detach:
        return process.serve_foreground(settings, timeout=timeout, reuse=args.reuse)
    server = process.start_server(settings, timeout=timeout, reuse=args.reuse)
    already = "already running, reused" if server.reused else "ready"
    print(f"tritonserver {already} at {server.http_url} (pid {server.pid})")
    print(f"pid file: {server.pid_path}")
    print(f"log: {server.log_path}")
    print(f"stop it with: facecast stop --http-port {server.http_port}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- stop


def _stop_arguments(parser: argparse.ArgumentParser) -> None:
    _add_port_options(parser, identifies_by_http_port=True)


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.serving import errors
    from facecast.serving import health
    from facecast.serving import process

    result = process.stop_server(settings)
    if not result.was_running:
        print(f"tritonserver pid {result.pid} was not running; removed its stale pid file")
    else:
        how = " (it ignored SIGTERM: killed)" if result.killed else ""
        print(f"stopped tritonserver pid {result.pid} in {result.seconds:.1f} s{how}")
    return EXIT_OK


# -------------------------------------------------------------------------------------------------- status


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _add_port_options(parser, identifies_by_http_port=True)
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.serving import errors
    from facecast.serving import health
    from facecast.serving import process

    status = process.server_status(settings)
    exit_code = EXIT_OK if status["ready"] else EXIT_NOT_READY
    if args.json:
        print(json.dumps(status, indent=2))
        return exit_code

    if not status["live"]:
        print(f"tritonserver at {status['url']}: not reachable")
    else:
        version = status.get("server_version", "?")
        print(f"tritonserver {version} at {status['url']}: {'ready' if status['ready'] else 'live, NOT ready'}")
    record = status.get("process")
    if record:
        state = "running" if record["running"] else "not running (stale pid file)"
        print(f"pid {record['pid']}: {state}; started {record['started_at_iso']}; pid file {status['pid_file']}")
        print(f"log: {record['log_path']}")
        print(f"model repository: {record['model_repository']}")
    if status["live"]:
        print("models:" if status["models"] else "models: none")
        for model in status["models"]:
            reason = f"  {model['reason']}" if model.get("reason") else ""
            print(f"  {model['name']:<24} version {model.get('version', '-'):<4} {model.get('state', '?')}{reason}")
    return exit_code


# ------------------------------------------------------------------------------------------------ classify

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}


def _classify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders of them")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--url", action="append", help="Triton host:port (repeat for failover; default: local server)")
    parser.add_argument("--db", type=Path, help="DuckDB file to record results in (default: FACECAST_DB)")
    parser.add_argument("--no-store", action="store_true", help="do not record the results")
    parser.add_argument("--http-port", type=int, help="port of the local Triton (default: FACECAST_HTTP_PORT or 8000)")


def _expand_images(paths: list[Path]) -> list[Path]:
    expanded = []
    for path in paths:
        if path.is_dir():
            expanded += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            expanded.append(path)
    return expanded


def cmd_classify(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.vocab import EXPRESSION_ENCODER
    from facecast.classify import ClassifiedImage, classify_images, read_sources
    from facecast.clients.expression_encoder import ExpressionRecognizer
    from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable
    from facecast.serving.client import TritonModelClient

    paths = _expand_images(args.images)
    if not paths:
        print("facecast classify: error: no image files found in the given folder(s)", file=sys.stderr)
        return EXIT_ERROR
    readable, unreadable = [], []
    for name, data, error in read_sources(paths):
        (readable.append((name, data)) if data is not None else unreadable.append(ClassifiedImage(name, None, None, error)))
    recognizer = ExpressionRecognizer(TritonModelClient(EXPRESSION_ENCODER, args.url or [settings.triton_url]))
    try:
        results = classify_images(readable, recognizer) if readable else []
    except (TritonUnavailable, ModelUnavailable, InferenceFailed) as error:
        print(f"facecast classify: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    order = {str(p): i for i, p in enumerate(paths)}
    results = sorted(results + unreadable, key=lambda r: order.get(r.source, 0))

    if not args.no_store:
        _record_classifications(results, args.db or settings.db_path)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            if result.prediction is None:
                print(f"{result.source}: error: {result.error}")
                continue
            p = result.prediction
            params = " ".join(f"{k}={v:.2f}" for k, v in p.action_params.items())
            print(f"{result.source}: {p.emotion} ({p.confidence:.0%}), style {p.style} "
                  f"({p.style_probs[p.style]:.0%}), {params}")
    failed = sum(r.prediction is None for r in results)
    return EXIT_OK if failed == 0 else EXIT_PARTIAL


def _record_classifications(results, db_path: Path) -> None:
    from facecast.store import StoreError, open_store

    rows = [r.as_record() for r in results if r.prediction is not None]
    if not rows:
        return
    try:
        with open_store(db_path) as store:
            store.classifications.add(rows)
    except StoreError as error:  # results are still printed; only the record is missing
        print(f"facecast classify: warning: results not recorded: {error}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------- analyze


def _analyze_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clips", nargs="+", type=Path, help="video files (mp4, mov, webm, mkv, gif)")
    parser.add_argument("--json", action="store_true", help="one JSON document (a list of reports) on stdout")
    parser.add_argument("--thumbnails", action="store_true", help="with --json: include key-moment thumbnails")
    parser.add_argument("--force", action="store_true", help="analyse again even if this content was analysed")
    parser.add_argument("--no-store", action="store_true", help="do not record the reports")
    parser.add_argument("--db", type=Path, help="DuckDB file (default: FACECAST_DB)")
    parser.add_argument("--url", action="append", help="Triton host:port (repeat for failover; default: local server)")
    parser.add_argument("--http-port", type=int, help="port of the local Triton (default: FACECAST_HTTP_PORT or 8000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from facecast.clips.pipeline import ClipAnalyzer, file_sha256
    from facecast.media.video import AnalysisCancelled, MediaError
    from facecast.clips.report import EngagementReport
    from facecast.store import StoreError, open_store
    from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable

    analyzer = ClipAnalyzer.for_urls(args.url or [settings.triton_url])
    try:
        fingerprint = analyzer.options.fingerprint(analyzer.models())
    except (TritonUnavailable, ModelUnavailable) as error:
        print(f"facecast analyze: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    store = None
    if not args.no_store:
        try:
            store = open_store(args.db or settings.db_path)
        except StoreError as error:
            print(f"facecast analyze: error: {error}", file=sys.stderr)
            return EXIT_ERROR
    reports, failed = [], 0
    cancel = threading.Event()
    try:
        for path in args.clips:
            if not path.is_file():
                print(f"facecast analyze: error: {path}: no such file", file=sys.stderr)
                failed += 1
                continue
            digest = file_sha256(path)
            stored = store.analyses.find(digest, fingerprint) if store and not args.force else None
            if stored is not None:
                report = EngagementReport.from_dict(json.loads(stored.report_json))
                print(f"{path}: already analysed (analysis {stored.id}, {stored.created_at:%Y-%m-%d %H:%M} UTC); "
                      "showing the stored report (--force analyses again)", file=sys.stderr)
            else:
                try:
                    with _progress_bar(path.name, disabled=args.quiet) as update:
                        analysis = analyzer.analyze(path, sha256=digest, progress=update, cancel=cancel)
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
                    store.analyses.add(analysis.record())
            reports.append(report)
            if not args.json:
                _print_report(report)
    except KeyboardInterrupt:
        cancel.set()
        print("facecast analyze: interrupted; the clip in progress was not stored", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AnalysisCancelled as error:
        print(f"facecast analyze: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (TritonUnavailable, ModelUnavailable) as error:
        print(f"facecast analyze: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(json.dumps([r.as_dict(thumbnails=args.thumbnails) for r in reports], indent=2))
    return EXIT_OK if failed == 0 else EXIT_PARTIAL


class _progress_bar:
    """A tqdm bar on stderr over the fraction of the clip decoded (percent); the other stages follow within 32 s."""

    def __init__(self, name: str, disabled: bool):
        self.name, self.disabled = name, disabled

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc=self.name, unit="%", disable=self.disabled, file=sys.stderr, leave=False,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

        def update(stage: str, fraction: float) -> None:
            if stage == "decode":  # the stream the other stages follow, and the smoothest of them
                self.bar.update(max(0.0, 100 * fraction - self.bar.n))

        return update

    def __exit__(self, *exc_info) -> None:
        self.bar.close()


def _print_report(report) -> None:
    from facecast.vocab import AUDIENCE_GROUPS

    clip = report.clip
    print(f"{clip.name}  ({clip.duration_s:.1f} s, {clip.width}x{clip.height}, {clip.codec})")
    if not report.faces_found:
        print("  no faces found: no engagement prediction")
    else:
        def scored(s) -> str:
            return f"{s.value:.2f} [{s.low:.2f}, {s.high:.2f}]"

        classes = ", ".join(f"{k} {v:.0%}" for k, v in report.class_probabilities.items())
        print(f"  engagement    {scored(report.engagement)}  class {report.engagement_class} ({classes})")
        print(f"  resonance     {scored(report.resonance)}")
        print(f"  shareability  {scored(report.shareability)}")
        print("  appeal        " + "  ".join(f"{g} {report.appeal[g].value:.2f}" for g in AUDIENCE_GROUPS))
        print(f"  per second    {_sparkline([p.value for p in report.curve])}")
        for character in report.characters:
            timeline = ", ".join(f"{s.emotion} {s.start_s:.1f}–{s.end_s:.1f}s" for s in character.timeline[:6])
            more = f" (+{len(character.timeline) - 6} more)" if len(character.timeline) > 6 else ""
            print(f"  character {character.track_id}: {character.style}, on screen {character.screen_time_s:.1f} s, "
                  f"mostly {character.dominant_emotion}: {timeline}{more}")
        for moment in report.key_moments:
            print(f"  key moment {moment.t_s:6.2f} s: character {moment.track_id} {moment.emotion} "
                  f"({moment.confidence:.0%}), weight {moment.weight:.2f}")
    for note in report.notes:
        print(f"  note: {note}")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in report.timings_s.items() if k not in ("total", "realtime_factor"))
    print(f"  {report.counts.get('frames_sampled', 0)} frames sampled, {report.counts.get('faces_encoded', 0)} faces; "
          f"{report.timings_s.get('total', 0):.2f} s ({report.timings_s.get('realtime_factor', 0):.1f}× real time: "
          f"{timings})")


def _sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    return "".join(bars[min(len(bars) - 1, int(v * len(bars)))] for v in values[:120])


# ------------------------------------------------------------------------------------------- library / search


def _library_common(parser: argparse.ArgumentParser, *, triton: bool) -> None:
    parser.add_argument("--db", type=Path, help="DuckDB library file (default: FACECAST_DB); the vector index lives "
                        "beside it as <db>.faiss")
    if triton:
        parser.add_argument("--url", action="append", help="Triton host:port (repeat for failover; default: local "
                            "server)")
        parser.add_argument("--http-port", type=int, help="port of the local Triton (default: FACECAST_HTTP_PORT or "
                            "8000)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _library_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add face images, folders, CSV manifests or analysed clips' key moments")
    add.add_argument("paths", nargs="*", type=Path, help="image files, folders of them, or .csv manifests")
    add.add_argument("--labels", type=Path, help="CSV with path, emotion, style, character, intensity, mouth, eye, "
                     "brow, cheek (training/data/manifest.py format); without it the embedder's heads label items")
    add.add_argument("--analysis", type=int, action="append", default=[], metavar="ID",
                     help="add the key-moment faces of stored clip analysis ID (repeatable)")
    _library_common(add, triton=True)
    stats = actions.add_parser("stats", help="how many items, per emotion, style and source; the index state")
    _library_common(stats, triton=False)
    remove = actions.add_parser("remove", help="delete items by id")
    remove.add_argument("ids", nargs="+", type=int, metavar="ID")
    _library_common(remove, triton=False)
    label = actions.add_parser("label", help="set an item's emotion, style or character (a person's label)")
    label.add_argument("id", type=int, metavar="ID")
    label.add_argument("--emotion", choices=_emotions())
    label.add_argument("--style", choices=_styles())
    label.add_argument("--character")
    _library_common(label, triton=False)


def _emotions() -> tuple[str, ...]:
    from facecast.vocab import EMOTIONS

    return EMOTIONS


def _styles() -> tuple[str, ...]:
    from facecast.vocab import STYLES

    return STYLES


def _open_library(args: argparse.Namespace, settings: Settings, *, triton: bool, name: str):
    """(library, None) or (None, exit code) after printing why it cannot be opened."""
    from facecast.clients.embedders import Embedders
    from facecast.library import Library
    from facecast.store import StoreError

    embedders = None
    if triton:
        try:
            embedders = Embedders.for_urls(args.url or [settings.triton_url])
        except ImportError as error:
            print(f"facecast {name}: error: the embedding client is not installed ({error})", file=sys.stderr)
            return None, EXIT_ERROR
    try:
        library = Library.open(args.db or settings.db_path, embedders=embedders)
    except StoreError as error:
        print(f"facecast {name}: error: {error}", file=sys.stderr)
        return None, EXIT_ERROR
    for note in library.notes:
        print(f"facecast {name}: note: {note}", file=sys.stderr)
    return library, None


def _library_errors():
    from facecast.library.feedback import FeedbackError
    from facecast.library import LibraryError
    from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable

    errors: tuple[type[BaseException], ...] = (LibraryError, FeedbackError, TritonUnavailable, ModelUnavailable,
                                               InferenceFailed)
    try:
        from facecast.clients.embedders import QueryError as EmbeddingQueryError
        from facecast.text import QueryTextError, TokenizerMissing

        errors += (QueryTextError, TokenizerMissing, EmbeddingQueryError)
    except ImportError:
        pass
    return errors


def cmd_library(args: argparse.Namespace, settings: Settings) -> int:
    action = args.library_command
    name = f"library {action}"
    library, failed = _open_library(args, settings, triton=action == "add", name=name)
    if library is None:
        return failed
    try:
        if action == "stats":
            stats = library.stats()
            if args.json:
                print(json.dumps(stats, indent=2))
            else:
                print(f"{stats['items']} items ({stats['labelled']} labelled by people), {stats['characters']} "
                      f"characters, {stats['feedback']} feedback events")
                for key in ("emotion", "style", "source"):
                    print(f"  {key:<8} " + ", ".join(f"{k} {v}" for k, v in stats[key].items()))
                index = stats["index"]
                print(f"  index    {index['vectors']} vectors ({index['device']}), {index['path']}")
            return EXIT_OK
        if action == "remove":
            removed, unknown = library.remove(args.ids)
            if args.json:
                print(json.dumps({"removed": removed, "not_found": unknown}))
            else:
                print(f"removed {len(removed)} item(s)" + (f": {', '.join(map(str, removed))}" if removed else ""))
                for item_id in unknown:
                    print(f"no item {item_id} in the library", file=sys.stderr)
            return EXIT_OK if not unknown else EXIT_PARTIAL
        if action == "label":
            if not library.update_labels(args.id, emotion=args.emotion, style=args.style, character=args.character):
                print(f"facecast {name}: error: no item {args.id} in the library", file=sys.stderr)
                return EXIT_ERROR
            print(f"item {args.id} labelled")
            return EXIT_OK
        return _library_add(library, args, name)
    except _library_errors() as error:
        print(f"facecast {name}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        library.close()


def _library_add(library, args: argparse.Namespace, name: str) -> int:
    from facecast.library import IngestReport

    if not args.paths and not args.analysis:
        print(f"facecast {name}: error: give image files, folders, manifests (.csv) or --analysis ID",
              file=sys.stderr)
        return EXIT_ERROR
    total = IngestReport()
    manifests = [p for p in args.paths if p.suffix.lower() == ".csv" and p.is_file()]
    images = [p for p in args.paths if p not in manifests]
    reports = [library.add_manifest(m) for m in manifests]
    if images:
        reports.append(library.add_images(images, labels=args.labels))
    reports += [library.add_from_analysis(i) for i in args.analysis]
    for report in reports:
        total.added += report.added
        total.duplicates += report.duplicates
        total.failed += report.failed
        total.notes += report.notes
    if args.json:
        print(json.dumps(total.as_dict(), indent=2))
    else:
        for path, existing in total.duplicates:
            print(f"{path}: already in the library ({'item ' + str(existing) if isinstance(existing, int) else 'same content as ' + existing})")
        for path, error in total.failed:
            print(f"{path}: error: {error}")
        for note in total.notes:
            print(f"note: {note}")
        print(f"added {len(total.added)} item(s), {len(total.duplicates)} duplicate(s), {len(total.failed)} "
              f"failed; the library has {library.store.library.count()} items")
    return EXIT_OK if not total.failed else EXIT_PARTIAL


def _search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", help="describe the expression, e.g. \"shy smile, anime\"")
    parser.add_argument("--image", type=Path, help="a reference face image")
    parser.add_argument("--emotion", choices=_emotions(), help="ask for (and keep only) this emotion")
    parser.add_argument("--style", choices=_styles(), help="ask for (and keep only) this style")
    parser.add_argument("--character", help="keep only this character's expressions")
    parser.add_argument("--top", type=int, default=10, help="how many results (default 10)")
    parser.add_argument("--user", help="rank with this user's learned weights and preferences ('team:NAME' for a team)")
    parser.add_argument("--select", type=int, nargs="+", metavar="ID",
                        help="with --user: record that you picked these results (the others count as skipped)")
    _library_common(parser, triton=True)


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.library import Filters, Query

    if args.text is None and args.image is None and args.emotion is None and args.style is None:
        print("facecast search: error: give --text, --image, --emotion or --style (or several)", file=sys.stderr)
        return EXIT_ERROR
    if args.select and not args.user:
        print("facecast search: error: --select needs --user (whose feedback it is)", file=sys.stderr)
        return EXIT_ERROR
    library, failed = _open_library(args, settings, triton=True, name="search")
    if library is None:
        return failed
    try:
        results = library.search(Query(text=args.text, image=args.image, emotion=args.emotion, style=args.style),
                                 top_k=args.top, profile=args.user,
                                 filters=Filters(emotion=args.emotion, style=args.style, character=args.character))
        if args.select:
            library.record_selection(args.user, results, args.select)
            results.notes.append(f"recorded {len(args.select)} selection(s) for {args.user}; weights re-learned")
    except _library_errors() as error:
        print(f"facecast search: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        library.close()
    if args.json:
        print(json.dumps(results.as_dict(), indent=2))
        return EXIT_OK
    for note in results.notes:
        print(f"note: {note}", file=sys.stderr)
    if results.results:
        print(f"{'#':>3} {'id':>7} {'score':>6}  {'emotion':<10} {'style':<12} {'character':<12} why (φ: emo sty tmp chr pref)")
    for r in results.results:
        phi = " ".join(f"{v:.2f}" for v in r.phi.values())
        print(f"{r.rank:>3} {r.id:>7} {r.score:6.3f}  {r.emotion:<10} {r.style:<12} {str(r.character or '-'):<12} "
              f"{phi}  {r.source_path}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------------- map


def _map_arguments(parser: argparse.ArgumentParser) -> None:
    from facecast.vocab import ACTION_PARAMS

    parser.add_argument("image", type=Path, help="a face picture (PNG, JPEG, WebP, GIF, BMP), or a frame with a face")
    # Validated by facecast.mapping (not argparse choices/float), so a bad value is one line and exit 2.
    parser.add_argument("--to", required=True, metavar="STYLE", help=f"target style: {', '.join(_styles())}")
    for param in ACTION_PARAMS:
        parser.add_argument(f"--{param}", metavar="X", help=f"set {param} (0..1; clamped into the target style's "
                            "range, and said so)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the mapped face (.png)")
    parser.add_argument("--no-detect", action="store_true",
                        help="map the whole picture even if the face detector finds no face in it")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--url", action="append", help="Triton host:port (repeat for failover; default: local server)")
    parser.add_argument("--http-port", type=int, help="port of the local Triton (default: FACECAST_HTTP_PORT or 8000)")


def cmd_map(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.mapping import (
        MappingInputError,
        NotAFaceError,
        StyleMapper,
        validate_overrides,
        validate_style,
        write_png_atomically,
    )
    from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable
    from facecast.vocab import ACTION_PARAMS

    def refuse(message: str) -> int:
        print(f"facecast map: error: {message}", file=sys.stderr)
        return EXIT_PARTIAL

    overrides = {param: getattr(args, param) for param in ACTION_PARAMS if getattr(args, param) is not None}
    try:  # everything that can be checked without the server, before it is asked anything
        style = validate_style(args.to)
        validate_overrides(overrides, style)
    except MappingInputError as error:
        return refuse(str(error))
    if args.out.suffix.lower() != ".png":
        return refuse(f"--out {args.out}: the mapped face is written as PNG; give a path ending in .png")
    if args.out.is_dir():
        return refuse(f"--out {args.out}: is a folder; give a file path ending in .png")
    if not args.image.is_file():
        return refuse(f"{args.image}: {'is a folder, not an image file' if args.image.is_dir() else 'no such file'}")

    mapper = StyleMapper.for_urls(args.url or [settings.triton_url])
    try:
        result = mapper.map_expression(args.image, style, overrides, assume_face=args.no_detect)
    except NotAFaceError as error:
        return refuse(f"{error}; if it is a face, map it anyway with --no-detect")
    except MappingInputError as error:
        return refuse(str(error))
    except (TritonUnavailable, ModelUnavailable, InferenceFailed) as error:
        print(f"facecast map: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    try:
        write_png_atomically(result.mapped, args.out)
    except OSError as error:
        print(f"facecast map: error: {args.out}: cannot write ({error.strerror or error})", file=sys.stderr)
        return EXIT_ERROR

    if args.json:
        print(json.dumps({"image": str(args.image), "out": str(args.out), **result.as_dict()}, indent=2))
        return EXIT_OK

    def params(values: dict) -> str:
        return " ".join(f"{k}={v:.2f}" for k, v in values.items())

    print(f"{args.image} → {style}: {args.out}")
    print(f"  source   {result.source_style} ({result.source_style_probs[result.source_style]:.0%}), "
          f"{result.emotion} ({result.emotion_probs[result.emotion]:.0%}); {result.source.description}")
    print(f"  read     {params(result.source_params)}")
    print(f"  applied  {params(result.applied_params)}")
    for notice in result.notices:
        print(f"  note: {notice}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- train


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", choices=("engagement",), help="what to train (engagement: on your own clips)")
    parser.add_argument("--manifest", type=Path, required=True,
                        help="CSV: path,views,likes,shares,watch_pct[,appeal_<group>...][,split] (see training/studio_engagement.py)")
    parser.add_argument("--base", type=Path, help="weights to start from (default: weights/engagement-cpu.pt)")
    parser.add_argument("--out", type=Path, default=Path("runs/engagement-studio/best.pt"), help="where to write the weights")
    parser.add_argument("--install", action="store_true",
                        help="also export the result into the model repository as the served `engagement` model")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--url", action="append", help="Triton host:port used to analyse the clips (default: local server)")
    parser.add_argument("--http-port", type=int, help="port of the local Triton (default: FACECAST_HTTP_PORT or 8000)")


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from training.studio_engagement import StudioManifestError, train_studio_engagement
    except ImportError as error:  # the runtime install has no torch: training is the `training` extra
        print(f"facecast train: error: training needs the training extra (torch): pip install -e '.[training]' "
              f"({error})", file=sys.stderr)
        return EXIT_ERROR
    from facecast.media.video import MediaError
    from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable

    base = args.base or settings.root / "weights" / "engagement-cpu.pt"
    try:
        summary = train_studio_engagement(args.manifest, args.out, args.url or [settings.triton_url], base,
                                          max_epochs=args.max_epochs, log=lambda line: print(line, flush=True))
    except (StudioManifestError, MediaError, TritonUnavailable, ModelUnavailable, InferenceFailed) as error:
        print(f"facecast train: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"weights: {summary['out']} ({summary['clips']} clips, {summary['windows']} windows; "
          f"{summary['stop_reason']})")
    if args.install:
        from export.triton_repository import write_repository

        write_repository(settings.model_repository, [args.out])
        print(f"installed into {settings.model_repository}; restart Triton to serve it: "
              "facecast stop && facecast serve --detach")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings], int]


# The one place subcommands are registered.
COMMANDS: tuple[Command, ...] = (
    Command("serve", "run the local Triton server (foreground, or --detach)", _serve_arguments, cmd_serve),
    Command("stop", "stop a server started with `facecast serve`", _stop_arguments, cmd_stop),
    Command("status", "is the server ready, and which models does it serve", _status_arguments, cmd_status),
    Command("classify", "emotion, style and action parameters of face images, through Triton", _classify_arguments,
            cmd_classify),
    Command("analyze", "engagement report of video clips (decode, detect, track, encode, engagement) via Triton",
            _analyze_arguments, cmd_analyze),
    Command("train", "train the engagement model on your own clips and audience metrics", _train_arguments, cmd_train),
    Command("library", "the expression library: add images/manifests/analysed clips, stats, remove, label",
            _library_arguments, cmd_library),
    Command("search", "search the expression library by text, image, emotion and style (two-stage, re-ranked)",
            _search_arguments, cmd_search),
    Command("map", "draw a face's expression in another style (realistic, cartoon, anime, stylized_3d) via Triton",
            _map_arguments, cmd_map),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facecast", description="facecast: expression analysis over Triton")
    parser.add_argument("--version", action="version", version=f"facecast {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here, not at the top: `facecast --help` must not pay for anything heavy.
    from facecast.serving.errors import TritonServerError

    try:
        settings = _settings_from_args(load_settings(), args)
        return args.handler(args, settings)
    except TritonServerError as error:
        print(f"facecast {args.command}: error: {error.summary}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as error:  # e.g. a malformed FACECAST_* variable
        print(f"facecast {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"facecast {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `facecast classify --json ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
