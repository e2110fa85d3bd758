"""`facecast train engagement`: fine-tune the engagement model on a studio's own clips and audience metrics.

This is the one place the runtime reaches into training/ and export/ (torch): imported only when the command
runs, so the runtime install (no `training` extra) still has every other command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facecast.cli import options
from facecast.cli.exits import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNAVAILABLE
from facecast.config import Settings


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", choices=("engagement",), help="what to train (engagement: on your own clips)")
    parser.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help="CSV: path,views,likes,shares,watch_pct[,appeal_<group>...][,split] (see training/studio_engagement.py)",
    )
    parser.add_argument("--base", type=Path, help="weights to start from (default: weights/engagement-cpu.pt)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/engagement-studio/best.pt"), help="where to write the weights"
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="also export the result into the model repository as the served `engagement` model",
    )
    parser.add_argument("--max-epochs", type=int, default=30)
    options.triton(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from training.studio_engagement import StudioManifestError, train_studio_engagement
    except ImportError as error:  # the runtime install has no torch: training is the `training` extra
        print(
            f"facecast train: error: training needs the training extra (torch): pip install -e '.[training]' ({error})",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE

    base = args.base or settings.root / "weights" / "engagement-cpu.pt"
    try:
        summary = train_studio_engagement(
            args.manifest,
            args.out,
            options.triton_urls(args, settings),
            base,
            max_epochs=args.max_epochs,
            log=lambda line: print(line, flush=True),
        )
    except StudioManifestError as error:
        print(f"facecast train: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"weights: {summary['out']} ({summary['clips']} clips, {summary['windows']} windows; {summary['stop_reason']})"
    )
    if args.install:
        from export.triton_repository import write_repository

        write_repository(settings.model_repository, [args.out])
        print(
            f"installed into {settings.model_repository}; restart Triton to serve it: "
            "facecast stop && facecast serve --detach"
        )
    return EXIT_OK
