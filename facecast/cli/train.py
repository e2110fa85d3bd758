"""`facecast train engagement`: calibrate the engagement model on a studio's own clips and audience metrics
(training/studio_engagement.py says how, and how it is validated).

This is the one place the runtime reaches into training/ and export/ (torch): imported only when the command
runs, so the runtime install (no `training` extra) still has every other command.

With --install, the calibrated network becomes the next version of the served `engagement` model: exported into the
model repository beside the others, loaded by every Triton endpoint (no restart), and recorded with its model card
(training summary, cross-validation, whether it may serve) in the store. It does not serve until someone activates
it (the Calibrate page, or `--activate`), and only a version whose validation beat the default can be activated.
The Calibrate page runs this command in the background with --job-dir, where it writes its progress and result.
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import sys
from pathlib import Path

from facecast.cli import options
from facecast.cli.exits import EXIT_BAD_INPUT, EXIT_OK, EXIT_PARTIAL, EXIT_UNAVAILABLE
from facecast.cli.jobs import write_json
from facecast.config import Settings


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", choices=("engagement",), help="what to train (engagement: on your own clips)")
    parser.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help="CSV: path,views,likes,shares,watch_pct[,appeal_<group>...] (facecast/calibration/manifest.py)",
    )
    parser.add_argument("--clips-dir", type=Path, help="where the manifest's clips are (default: its folder)")
    parser.add_argument("--base", type=Path, help="weights to start from (default: weights/engagement-cpu.pt)")
    parser.add_argument("--out", type=Path, help="where to write the weights (default: runs/engagement-studio/best.pt)")
    parser.add_argument(
        "--install",
        action="store_true",
        help="add the result as the next version of the served `engagement` model (not active until activated)",
    )
    parser.add_argument(
        "--activate", action="store_true", help="with --install: make it the serving version if its validation allows"
    )
    parser.add_argument("--by", default=None, help="who asked for it, for the model card (default: your login)")
    parser.add_argument("--job-dir", type=Path, help=argparse.SUPPRESS)  # the Calibrate page's progress files
    parser.add_argument("--json", action="store_true", help="the summary as one JSON document on stdout")
    options.store(parser)
    options.triton(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    job = _Job(args.job_dir)
    try:
        return _run(args, settings, job)
    except BaseException as error:
        job.result({"ok": False, "error": f"{type(error).__name__}: {error}"})
        raise
    finally:
        if args.job_dir is not None and args.clips_dir is not None:
            # the uploads were analysed into History (their faces are what calibration keeps): no second copy on disk
            shutil.rmtree(args.clips_dir, ignore_errors=True)


def _run(args: argparse.Namespace, settings: Settings, job: _Job) -> int:
    try:
        from training.studio_engagement import StudioManifestError, train_studio_engagement
    except ImportError as error:  # the runtime install has no torch: training is the `training` extra
        message = f"training needs the training extra (torch): pip install -e '.[training]' ({error})"
        print(f"facecast train: error: {message}", file=sys.stderr)
        job.result({"ok": False, "error": message})
        return EXIT_UNAVAILABLE
    from facecast.store import open_store

    urls = options.triton_urls(args, settings)
    by = args.by or f"cli:{getpass.getuser()}"
    base = args.base or settings.root / "weights" / "engagement-cpu.pt"
    out = args.out or (
        args.job_dir / "engagement.pt" if args.job_dir else settings.root / "runs" / "engagement-studio" / "best.pt"
    )
    with open_store(settings.db_path) as store:
        try:
            summary = train_studio_engagement(
                args.manifest,
                out,
                urls,
                base,
                store=store,
                clips_dir=args.clips_dir,
                analysed_by=by,
                progress=job.progress,
                log=lambda line: print(line, flush=True),
            )
        except StudioManifestError as error:
            print(f"facecast train: error: {error}", file=sys.stderr)
            job.result({"ok": False, "error": str(error)})
            return EXIT_BAD_INPUT
        validation = summary["validation"]
        print(validation["statement"])
        print(f"weights: {summary['out']} ({summary['clips']} clips, {summary['windows']} windows)")
        if args.install:
            job.progress("install", 0.0, "adding the version to the model repository")
            version = install_version(out, settings.model_repository, urls)
            try:
                card = store.engagement_models.add(
                    version, summary["description"], by, summary["training"], validation, summary["activatable"]
                )
            except BaseException:  # a served version without a card would be invisible: take it out again
                uninstall_version(settings.model_repository, "engagement", version, urls)
                raise
            summary["version"] = version
            print(f"installed as engagement version {version}: {card.description}")
            if args.activate and card.activatable:
                store.engagement_models.activate(version, by)
                print(f"version {version} is now the serving engagement model")
            elif args.activate:
                print("not activated: its validation did not show it beats the default", file=sys.stderr)
            job.progress("install", 1.0, f"version {version} is served (not active until activated)")
    job.result({"ok": True, **summary})
    if args.json:
        import json

        print(json.dumps(summary, indent=2))
    return EXIT_PARTIAL if args.activate and not summary["activatable"] else EXIT_OK


def install_version(weights: Path, repository: Path, urls: list[str]) -> int:
    """Export the weights as the next `engagement` version and have every endpoint load it; returns the version.
    If an endpoint cannot load it, the version is taken out of the repository again (the served set is unchanged:
    Triton keeps the old set when a reload fails) and the error says why."""
    from export.triton_repository import add_version
    from facecast.serving.health import ModelLoadFailed, load_model, model_versions
    from training.checkpoints import load_checkpoint

    network = load_checkpoint(weights)
    name = network.config.triton_name
    if not (repository / name / "config.pbtxt").is_file():
        raise ModelLoadFailed(
            f"the served model repository is not on this machine ({repository / name} has no config.pbtxt): a "
            "deployment whose repository is baked into its image (compose, Kubernetes) serves a new version from a "
            "new image (docs/operations.md); set FACECAST_MODEL_REPOSITORY where it is local"
        )
    version = add_version(repository, network)
    try:
        for url in urls:
            load_model(url, name)
            state = model_versions(url, name).get(version)
            if state != "READY":
                raise ModelLoadFailed(f"{url}: {name} version {version} is {state or 'not loaded'} after the load")
    except (ModelLoadFailed, OSError) as error:
        uninstall_version(repository, name, version, urls)
        raise ModelLoadFailed(
            f"the calibrated model could not be served ({error}). A deployment whose model repository is baked into "
            "its image (compose, Kubernetes) serves a new version from a new image: docs/operations.md"
        ) from None
    return version


def uninstall_version(repository: Path, name: str, version: int, urls: list[str]) -> None:
    """Take a version out of the repository and have every endpoint reload the rest (a failed reload leaves the old
    set serving, which is the state wanted anyway)."""
    from facecast.serving.health import ModelLoadFailed, load_model

    shutil.rmtree(repository / name / str(version), ignore_errors=True)
    for url in urls:
        try:
            load_model(url, name)
        except (ModelLoadFailed, OSError):
            pass


class _Job:
    """The progress and result files of a Calibrate-page job (nothing without --job-dir)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.written = False

    def progress(self, stage: str, fraction: float, message: str) -> None:
        if self.folder is not None:
            write_json(self.folder / "progress.json", {"stage": stage, "fraction": fraction, "message": message})

    def result(self, document: dict) -> None:
        if self.folder is not None and not self.written:
            write_json(self.folder / "result.json", document)
            self.written = True
