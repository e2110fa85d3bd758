"""`facecast library` (add, stats, remove, label) and `facecast search`: the expression library from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facecast.cli import options
from facecast.cli.exits import EXIT_OK, UsageError, outcome
from facecast.config import Settings
from facecast.library import Library
from facecast.vocab import EMOTIONS, STYLES


def _common(parser: argparse.ArgumentParser, *, triton: bool) -> None:
    options.store(parser, what="DuckDB library file; the vector index lives beside it as <db>.faiss")
    if triton:
        options.triton(parser)
    options.json_output(parser)


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add face images, folders, CSV manifests or analysed clips' key moments")
    add.add_argument("paths", nargs="*", type=Path, help="image files, folders of them, or .csv manifests")
    add.add_argument(
        "--labels",
        type=Path,
        help="CSV with path, emotion, style, character, intensity, mouth, eye, "
        "brow, cheek (training/data/manifest.py format); without it the embedder's heads label items",
    )
    add.add_argument(
        "--analysis",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="add the key-moment faces of stored clip analysis ID (repeatable)",
    )
    _common(add, triton=True)
    stats = actions.add_parser("stats", help="how many items, per emotion, style and source; the index state")
    _common(stats, triton=False)
    remove = actions.add_parser("remove", help="delete items by id")
    remove.add_argument("ids", nargs="+", type=int, metavar="ID")
    _common(remove, triton=False)
    label = actions.add_parser("label", help="set an item's emotion, style or character (a person's label)")
    label.add_argument("id", type=int, metavar="ID")
    label.add_argument("--emotion", choices=EMOTIONS)
    label.add_argument("--style", choices=STYLES)
    label.add_argument("--character")
    _common(label, triton=False)


def _open(args: argparse.Namespace, settings: Settings, *, triton: bool, name: str) -> Library:
    from facecast.clients.embedders import Embedders

    embedders = Embedders.for_urls(options.triton_urls(args, settings)) if triton else None
    library = Library.open(settings.db_path, embedders=embedders)
    for note in library.notes:
        print(f"facecast {name}: note: {note}", file=sys.stderr)
    return library


def run(args: argparse.Namespace, settings: Settings) -> int:
    action = args.library_command
    if action == "add" and not args.paths and not args.analysis:
        raise UsageError("give image files, folders, manifests (.csv) or --analysis ID")
    with _open(args, settings, triton=action == "add", name=f"library {action}") as library:
        if action == "stats":
            return _stats(library, args)
        if action == "remove":
            removed, unknown = library.remove(args.ids)
            if args.json:
                print(json.dumps({"removed": removed, "not_found": unknown}))
            else:
                print(f"removed {len(removed)} item(s)" + (f": {', '.join(map(str, removed))}" if removed else ""))
                for item_id in unknown:
                    print(f"no item {item_id} in the library", file=sys.stderr)
            return outcome(len(removed), len(unknown))
        if action == "label":
            if not library.update_labels(args.id, emotion=args.emotion, style=args.style, character=args.character):
                raise UsageError(f"no item {args.id} in the library")
            print(f"item {args.id} labelled")
            return EXIT_OK
        return _add(library, args)


def _stats(library: Library, args: argparse.Namespace) -> int:
    stats = library.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK
    print(
        f"{stats['items']} items ({stats['labelled']} labelled by people), {stats['characters']} "
        f"characters, {stats['feedback']} feedback events"
    )
    for key in ("emotion", "style", "source"):
        print(f"  {key:<8} " + ", ".join(f"{k} {v}" for k, v in stats[key].items()))
    index = stats["index"]
    print(f"  index    {index['vectors']} vectors ({index['device']}), {index['path']}")
    return EXIT_OK


def _add(library: Library, args: argparse.Namespace) -> int:
    from facecast.library import IngestReport

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
            same = f"item {existing}" if isinstance(existing, int) else f"same content as {existing}"
            print(f"{path}: already in the library ({same})")
        for path, error in total.failed:  # on stderr, like every command's errors; the summary stays on stdout
            print(f"facecast library add: error: {path}: {error}", file=sys.stderr)
        for note in total.notes:
            print(f"note: {note}")
        print(
            f"added {len(total.added)} item(s), {len(total.duplicates)} duplicate(s), {len(total.failed)} "
            f"failed; the library has {library.store.library.count()} items"
        )
    return outcome(len(total.added) + len(total.duplicates), len(total.failed))


def search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", help='describe the expression, e.g. "shy smile, anime"')
    parser.add_argument("--image", type=Path, help="a reference face image")
    parser.add_argument("--emotion", choices=EMOTIONS, help="ask for (and keep only) this emotion")
    parser.add_argument("--style", choices=STYLES, help="ask for (and keep only) this style")
    parser.add_argument("--character", help="keep only this character's expressions")
    parser.add_argument("--top", type=int, default=10, help="how many results (default 10)")
    parser.add_argument("--user", help="rank with this user's learned weights and preferences ('team:NAME' for a team)")
    parser.add_argument(
        "--select",
        type=int,
        nargs="+",
        metavar="ID",
        help="with --user: record that you picked these results (the others count as skipped)",
    )
    _common(parser, triton=True)


def search(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.library import Filters, Query

    if args.text is None and args.image is None and args.emotion is None and args.style is None:
        raise UsageError("give --text, --image, --emotion or --style (or several)")
    if args.select and not args.user:
        raise UsageError("--select needs --user (whose feedback it is)")
    with _open(args, settings, triton=True, name="search") as library:
        results = library.search(
            Query(text=args.text, image=args.image, emotion=args.emotion, style=args.style),
            top_k=args.top,
            profile=args.user,
            filters=Filters(emotion=args.emotion, style=args.style, character=args.character),
        )
        if args.select:
            library.record_selection(args.user, results, args.select)
            results.notes.append(f"recorded {len(args.select)} selection(s) for {args.user}; weights re-learned")
    if args.json:
        print(json.dumps(results.as_dict(), indent=2))
        return EXIT_OK
    for note in results.notes:
        print(f"note: {note}", file=sys.stderr)
    if results.results:
        print(
            f"{'#':>3} {'id':>7} {'score':>6}  {'emotion':<10} {'style':<12} {'character':<12} "
            "why (φ: emo sty tmp chr pref)"
        )
    for r in results.results:
        phi = " ".join(f"{v:.2f}" for v in r.phi.values())
        print(
            f"{r.rank:>3} {r.id:>7} {r.score:6.3f}  {r.emotion:<10} {r.style:<12} {str(r.character or '-'):<12} "
            f"{phi}  {r.source_path}"
        )
    return EXIT_OK
