"""`facecast map`: draw a face's expression in another style, within that style's bounds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facecast.cli import options
from facecast.cli.exits import EXIT_OK, EXIT_UNAVAILABLE, UsageError
from facecast.config import Settings
from facecast.vocab import ACTION_PARAMS, STYLES


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="a face picture (PNG, JPEG, WebP, GIF, BMP), or a frame with a face")
    # Validated by facecast.mapping (not argparse choices/float), so a bad value is one line and exit 2.
    parser.add_argument("--to", required=True, metavar="STYLE", help=f"target style: {', '.join(STYLES)}")
    for param in ACTION_PARAMS:
        parser.add_argument(
            f"--{param}", metavar="X", help=f"set {param} (0..1; clamped into the target style's range, and said so)"
        )
    parser.add_argument("--out", type=Path, required=True, help="where to write the mapped face (.png)")
    parser.add_argument(
        "--no-detect", action="store_true", help="map the whole picture even if the face detector finds no face in it"
    )
    options.json_output(parser, "print the result as JSON")
    options.triton(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.mapping import NotAFaceError, StyleMapper, validate_overrides, validate_style, write_png_atomically

    overrides = {param: getattr(args, param) for param in ACTION_PARAMS if getattr(args, param) is not None}
    # everything that can be checked without the server, before it is asked anything
    style = validate_style(args.to)
    validate_overrides(overrides, style)
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: the mapped face is written as PNG; give a path ending in .png")
    if args.out.is_dir():
        raise UsageError(f"--out {args.out}: is a folder; give a file path ending in .png")
    if not args.image.is_file():
        raise UsageError(f"{args.image}: {'is a folder, not an image file' if args.image.is_dir() else 'no such file'}")

    mapper = StyleMapper.for_urls(options.triton_urls(args, settings))
    try:
        result = mapper.map_expression(args.image, style, overrides, assume_face=args.no_detect)
    except NotAFaceError as error:
        raise NotAFaceError(f"{error}; if it is a face, map it anyway with --no-detect") from None
    try:
        write_png_atomically(result.mapped, args.out)
    except OSError as error:  # a full disk or a read-only folder: the environment, not the input
        print(f"facecast map: error: {args.out}: cannot write ({error.strerror or error})", file=sys.stderr)
        return EXIT_UNAVAILABLE

    if args.json:
        print(json.dumps({"image": str(args.image), "out": str(args.out), **result.as_dict()}, indent=2))
        return EXIT_OK

    def params(values: dict[str, float]) -> str:
        return " ".join(f"{k}={v:.2f}" for k, v in values.items())

    description = result.source.description if result.source else ""
    print(f"{args.image} → {style}: {args.out}")
    print(
        f"  source   {result.source_style} ({result.source_style_probs[result.source_style]:.0%}), "
        f"{result.emotion} ({result.emotion_probs[result.emotion]:.0%}); {description}"
    )
    print(f"  read     {params(result.source_params)}")
    print(f"  applied  {params(result.applied_params)}")
    for notice in result.notices:
        print(f"  note: {notice}")
    return EXIT_OK
