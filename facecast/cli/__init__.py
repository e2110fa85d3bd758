"""The `facecast` command line: `python -m facecast <command> ...` or the `facecast` console script.

Each command is a module here with `arguments(parser)` and `run(args, settings) -> exit code`, registered in
COMMANDS below. Options several commands share are declared once (facecast.cli.options). A command raises the
errors facecast raises on purpose; `main` prints each as one line on stderr and maps its class to an exit code in
one table (facecast.cli.exits), never a traceback.

Commands are registered by module name and imported only when they run: a process start is part of every
`facecast analyze`, and importing all commands (the library's pandas and FAISS among them) cost about 0.6 s of it.
`main` reads the command name from argv first and imports that one module; `facecast --help` imports none.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from facecast import __version__
from facecast.cli.exits import EXIT_INTERRUPTED, EXIT_OK, exit_code_for
from facecast.cli.options import settings_from_args
from facecast.config import Settings, load_settings


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str  # facecast.cli.<module>, imported when the command runs
    arguments_function: str = "arguments"
    run_function: str = "run"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        getattr(self._module(), self.arguments_function)(parser)

    @property
    def run(self) -> Callable[[argparse.Namespace, Settings], int]:
        return getattr(self._module(), self.run_function)

    def _module(self) -> ModuleType:
        return importlib.import_module(f"facecast.cli.{self.module}")


# The one place commands are registered.
COMMANDS: tuple[Command, ...] = (
    Command("serve", "run the local Triton server (foreground, or --detach)", "server", "serve_arguments", "serve"),
    Command("stop", "stop a server started with `facecast serve`", "server", "stop_arguments", "stop"),
    Command("status", "is the server ready, and which models does it serve", "server", "status_arguments", "status"),
    Command(
        "classify",
        "emotion, style and action parameters of face images, through Triton",
        "classify",
    ),
    Command(
        "analyze",
        "engagement report of video clips (decode, detect, track, encode, engagement) via Triton",
        "analyze",
    ),
    Command("train", "train the engagement model on your own clips and audience metrics", "train"),
    Command(
        "library",
        "the expression library: add images/manifests/analysed clips, stats, remove, label",
        "library",
    ),
    Command(
        "search",
        "search the expression library by text, image, emotion and style (two-stage, re-ranked)",
        "library",
        "search_arguments",
        "search",
    ),
    Command(
        "map",
        "draw a face's expression in another style (realistic, cartoon, anime, stylized_3d) via Triton",
        "map",
    ),
    Command(
        "export",
        "back up the whole store (analyses, library with vectors, feedback) to Parquet",
        "backup",
        "export_arguments",
        "export",
    ),
    Command(
        "import", "load a `facecast export` backup into a new, empty store", "backup", "import_arguments", "import_"
    ),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` the arguments of that one command (the others are listed by name and
    help but not imported: argparse never looks inside a subcommand that is not the one given)."""
    parser = argparse.ArgumentParser(prog="facecast", description="facecast: expression analysis over Triton")
    parser.add_argument("--version", action="version", version=f"facecast {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        if only is None or command.name == only:
            command.add_arguments(sub)
            sub.set_defaults(handler=lambda args, settings, command=command: command.run(args, settings))
    return parser


def command_named(argv: Sequence[str]) -> str | None:
    """The command argv names: its first word that is not an option (the top level has no option with a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    named = command_named(argv)
    known = {command.name for command in COMMANDS}
    # No known command (`facecast --help`, a typo): "" adds no command's arguments; argparse prints the help or
    # the invalid-choice error from the names alone.
    args = build_parser(named if named in known else "").parse_args(argv)
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
