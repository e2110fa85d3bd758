"""`facecast classify`: emotion, style and action parameters of face images, one line (or JSON) per file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from facecast.cli import options
from facecast.cli.exits import UsageError, outcome
from facecast.config import Settings

if TYPE_CHECKING:
    from facecast.classify import ClassifiedImage


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders of them")
    options.json_output(parser)
    options.triton(parser)
    options.store(parser, what="DuckDB file to record results in")
    parser.add_argument("--no-store", action="store_true", help="do not record the results")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.classify import ClassifiedImage, classify_images, read_sources
    from facecast.clients.expression_encoder import ExpressionRecognizer
    from facecast.media.images import image_files
    from facecast.serving.client import TritonModelClient
    from facecast.vocab import EXPRESSION_ENCODER

    paths = image_files(args.images, recursive=False)
    if not paths:
        raise UsageError("no image files found in the given folder(s)")
    readable, unreadable = [], []
    for name, data, error in read_sources(paths):
        if data is not None:
            readable.append((name, data))
        else:
            unreadable.append(ClassifiedImage(name, None, None, error))
    recognizer = ExpressionRecognizer(TritonModelClient(EXPRESSION_ENCODER, options.triton_urls(args, settings)))
    results = classify_images(readable, recognizer) if readable else []
    order = {str(p): i for i, p in enumerate(paths)}
    results = sorted(results + unreadable, key=lambda r: order.get(r.source, 0))

    if not args.no_store:
        _record(results, settings.db_path)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            if result.prediction is None:  # the error names the file
                print(f"facecast classify: error: {result.error}", file=sys.stderr)
                continue
            p = result.prediction
            params = " ".join(f"{k}={v:.2f}" for k, v in p.action_params.items())
            print(
                f"{result.source}: {p.emotion} ({p.confidence:.0%}), style {p.style} "
                f"({p.style_probs[p.style]:.0%}), {params}"
            )
    failed = sum(r.prediction is None for r in results)
    return outcome(len(results) - failed, failed)


def _record(results: list[ClassifiedImage], db_path: Path) -> None:
    from facecast.store import StoreError, open_store

    rows = [r.as_record() for r in results if r.prediction is not None]
    if not rows:
        return
    try:
        with open_store(db_path) as store:
            store.classifications.add(rows)
    except StoreError as error:  # results are still printed; only the record is missing
        print(f"facecast classify: warning: results not recorded: {error}", file=sys.stderr)
