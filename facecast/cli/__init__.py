"""The `facecast` command line: `python -m facecast <command> ...` or the `facecast` console script.

Each command is a module here with `arguments(parser)` and `run(args, settings) -> exit code`, registered in
COMMANDS below. Options several commands share are declared once (facecast.cli.options). A command raises the
errors facecast raises on purpose; `main` prints each as one line on stderr and maps its class to an exit code in
one table (facecast.cli.exits), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from facecast import __version__
from facecast.cli import analyze, backup, classify, library, server, train
from facecast.cli import map as map_command
from facecast.cli.exits import EXIT_INTERRUPTED, EXIT_OK, exit_code_for
from facecast.cli.options import settings_from_args
from facecast.config import Settings, load_settings


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings], int]


# The one place commands are registered.
COMMANDS: tuple[Command, ...] = (
    Command("serve", "run the local Triton server (foreground, or --detach)", server.serve_arguments, server.serve),
    Command("stop", "stop a server started with `facecast serve`", server.stop_arguments, server.stop),
    Command("status", "is the server ready, and which models does it serve", server.status_arguments, server.status),
    Command(
        "classify",
        "emotion, style and action parameters of face images, through Triton",
        classify.arguments,
        classify.run,
    ),
    Command(
        "analyze",
        "engagement report of video clips (decode, detect, track, encode, engagement) via Triton",
        analyze.arguments,
        analyze.run,
    ),
    Command("train", "train the engagement model on your own clips and audience metrics", train.arguments, train.run),
    Command(
        "library",
        "the expression library: add images/manifests/analysed clips, stats, remove, label",
        library.arguments,
        library.run,
    ),
    Command(
        "search",
        "search the expression library by text, image, emotion and style (two-stage, re-ranked)",
        library.search_arguments,
        library.search,
    ),
    Command(
        "map",
        "draw a face's expression in another style (realistic, cartoon, anime, stylized_3d) via Triton",
        map_command.arguments,
        map_command.run,
    ),
    Command(
        "export",
        "back up the whole store (analyses, library with vectors, feedback) to Parquet",
        backup.export_arguments,
        backup.export,
    ),
    Command(
        "import", "load a `facecast export` backup into a new, empty store", backup.import_arguments, backup.import_
    ),
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
    name = args.command + (f" {args.library_command}" if args.command == "library" else "")
    try:
        settings = settings_from_args(load_settings(), args)
        return args.handler(args, settings)
    except KeyboardInterrupt:
        print(f"facecast {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `facecast classify --json ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return EXIT_OK
    except Exception as error:
        code = exit_code_for(error)
        if code is None:
            raise  # not one of ours: a bug, and its traceback is the report
        message = getattr(error, "summary", None) or str(error)
        print(f"facecast {name}: {'error: ' if code != EXIT_INTERRUPTED else ''}{message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
