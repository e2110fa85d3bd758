"""Evaluate expression encoders and write docs/results-expression.md.

    python -m training.evaluate_expression --model weights/expression_encoder-cpu.pt \
        --synthetic-test data/synthetic/test/manifest.csv --emoji data/emoji/manifest.csv \
        --loso runs/loso --loso-6-epochs runs/loso-6-epochs --loso-varied runs/loso-varied \
        --loso-cross-style runs/loso-cross-style \
        --out docs/results-expression.md

Reports, for the shipped model: accuracy and macro-F1 on held-out synthetic characters per style, accuracy on
held-out licensed emoji per set, both confusion matrices; and leave-one-style-out: for each style, a model trained
on the other three (runs/loso/without-<style>/best.pt) against the reference trained on all four with the same
budget (runs/loso/all-styles/best.pt), both tested on that style's held-out characters; the same for runs trained
twice as long (--loso-6-epochs), for runs that also read the stills drawn off their styles' layouts (--loso-varied;
training/data/synthetic.py, LookVariation) and for runs trained with the cross-style terms (--loso-cross-style;
training/cross_style.py) when those name their folders.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facecast.media.images import load_face
from facecast.vocab import EMOTIONS, STYLES
from training.checkpoints import load_checkpoint
from training.data.manifest import read_manifest
from training.evaluation import classification_scores, confusion, markdown_table, predict_images

# Issue 2 set the first three (a drop of ≤ 5 points); issue 14 item 3 relaxed the drop to ≤ 15 points and raised
# the emoji bar, with fear and disgust (the weakest classes on artist-drawn faces) named.
TARGETS = {"synthetic": 0.95, "loso_drop_points": 15.0, "emoji": 0.85, "emoji_recall": 0.75}
WEAK_EMOTIONS = ("fear", "disgust")


def load_images(frame: pd.DataFrame, size: int) -> np.ndarray:
    return np.stack([load_face(path, size) for path in frame["path"]])


def emotion_truth(frame: pd.DataFrame) -> np.ndarray:
    return frame["emotion"].map(EMOTIONS.index).to_numpy()


def predicted_emotions(model, images: np.ndarray) -> np.ndarray:
    if images.shape[1] != model.config.image_size:
        raise ValueError(f"images are {images.shape[1]} px but the model takes {model.config.image_size} px")
    return predict_images(model, images)["emotion_logits"].argmax(1)


def scores_by(frame: pd.DataFrame, truth: np.ndarray, predicted: np.ndarray, column: str) -> pd.DataFrame:
    rows = {}
    for value, index in frame.groupby(column).indices.items():
        rows[value] = classification_scores(truth[index], predicted[index]).as_row()
    rows["all"] = classification_scores(truth, predicted).as_row()
    return pd.DataFrame.from_dict(rows, orient="index")


def leave_one_style_out(loso_dir: Path, test: pd.DataFrame, images: np.ndarray) -> pd.DataFrame | None:
    """`images` are the decoded rows of `test`, decoded once by the caller and shared by every model here."""
    reference_path = loso_dir / "all-styles" / "best.pt"
    if not reference_path.is_file():
        return None
    reference = load_checkpoint(reference_path)
    rows = {}
    for style in STYLES:
        held_out_path = loso_dir / f"without-{style}" / "best.pt"
        if not held_out_path.is_file():
            continue
        rows_of_style = (test["style"] == style).to_numpy()
        truth = emotion_truth(test[rows_of_style])
        with_style = predicted_emotions(reference, images[rows_of_style])
        without_style = predicted_emotions(load_checkpoint(held_out_path), images[rows_of_style])
        seen = classification_scores(truth, with_style).accuracy
        unseen = classification_scores(truth, without_style).accuracy
        rows[style] = {
            "n": int(rows_of_style.sum()),
            "trained on all 4": seen,
            "style held out": unseen,
            "drop (points)": 100 * (seen - unseen),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _section(heading: str, *paragraphs: str) -> list[str]:
    """A page section: its heading, then each paragraph (or table) followed by a blank line."""
    lines = [f"## {heading}", ""]
    for paragraph in paragraphs:
        lines += [paragraph, ""]
    return lines


def _with_plain_drop(variant: pd.DataFrame, plain: pd.DataFrame | None, column: str) -> pd.DataFrame:
    """A variant's table with the plain runs' drop beside it (as `column`), where those runs are there to compare."""
    if plain is None:
        return variant
    return variant.join(plain[["drop (points)"]].rename(columns={"drop (points)": column}))


def _drop_target_row(label: str, value: float) -> str:
    target = TARGETS["loso_drop_points"]
    met = "yes" if value <= target else "no"
    return f"| worst leave-one-style-out drop{label} | {value:.1f} points | ≤ {target} | {met} |"


def _plain_runs_absent(args) -> list[str]:
    return [
        f"The plain runs (`make loso`, {args.loso or 'runs/loso'}) were not on the machine that wrote this page, so "
        "their drops are not beside these: the last table measured from them is in this page's git history "
        "(`git log -p docs/results-expression.md`).",
        "",
    ]


def training_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _recall(truth: np.ndarray, predicted: np.ndarray, emotion: str) -> float:
    rows = truth == EMOTIONS.index(emotion)
    return float((predicted[rows] == EMOTIONS.index(emotion)).mean())


def _headline_scores(
    test: pd.DataFrame, test_predicted: np.ndarray, emoji: pd.DataFrame | None, emoji_predicted: np.ndarray | None
) -> dict[str, float]:
    """Accuracy on held-out synthetic characters (all, and per style) and on emoji with the weak emotions' recall."""
    truth = emotion_truth(test)
    scores = {"synthetic, all": classification_scores(truth, test_predicted).accuracy}
    for style in STYLES:
        rows = (test["style"] == style).to_numpy()
        scores[f"synthetic, {style}"] = classification_scores(truth[rows], test_predicted[rows]).accuracy
    if emoji is not None and emoji_predicted is not None:
        truth = emotion_truth(emoji)
        scores["emoji, all"] = classification_scores(truth, emoji_predicted).accuracy
        for emotion in WEAK_EMOTIONS:
            scores[f"emoji, {emotion} recall"] = _recall(truth, emoji_predicted, emotion)
    return scores


def _candidate_section(
    args,
    shipped: dict[str, float],
    test: pd.DataFrame,
    test_images: np.ndarray,
    emoji: pd.DataFrame | None,
    emoji_images: np.ndarray | None,
) -> list[str]:
    """The shipped encoder's headline scores (`shipped`) beside a candidate's on the same images, for a recipe not
    shipped yet."""
    candidate = load_checkpoint(args.candidate)
    emoji_predicted = predicted_emotions(candidate, emoji_images) if emoji_images is not None else None
    columns = {
        "shipped": shipped,
        "candidate": _headline_scores(test, predicted_emotions(candidate, test_images), emoji, emoji_predicted),
    }
    summary = training_summary(Path(args.candidate).parent)
    trained_on = (
        f" It was trained on {', '.join(summary['train_manifests'])} ({summary['train_images']} images, best epoch "
        f"{summary['best_epoch']}, {summary['wall_seconds'] / 60:.1f} min)."
        if summary
        else ""
    )
    return _section(
        "A candidate encoder, not shipped",
        f"`{args.candidate}`: the shipped recipe (`make train-candidate`) trained on the train split and its varied "
        f"looks (training/data/synthetic.py, `LookVariation`).{trained_on} Each epoch reads every seed twice "
        "(plain and varied), so it takes twice the shipped encoder's steps: part of a difference may be the longer "
        "training, which no plain run of that length here separates. Shipping it would change what every "
        "downstream model reads (the engagement rows, the image embedder's backbone, the style mapper's "
        "perceptual loss and judge 1, tracking's re-identification), so those are retrained with it or not at all.",
        markdown_table(pd.DataFrame(columns)),
    )


def write_report(args) -> str:
    started = time.monotonic()
    model = load_checkpoint(args.model)
    lines = [
        "# Expression recognition results",
        "",
        f"Written by `python -m training.evaluate_expression` (`make evaluate`); model `{args.model}` "
        f"(`{model.config.triton_name}`, {model.config.image_size}-px input). Rerun `make models` to rebuild the "
        "data, retrain and regenerate this page. Targets (issues 2 and 14): accuracy ≥ 0.95 on held-out "
        "synthetic characters, leave-one-style-out drop ≤ 15 points, ≥ 0.85 on held-out licensed emoji with "
        "fear and disgust recall ≥ 0.75 each.",
        "",
    ]

    for run in args.runs:
        summary = training_summary(run)
        if summary is None:
            lines += [f"Training run `{run}` is not on the machine that wrote this page (`make train` writes it).", ""]
        else:
            lines += [
                f"Training run `{run}`: {summary['train_images']} training images, best epoch "
                f"{summary['best_epoch']}, {summary['wall_seconds'] / 60:.1f} min wall time on this machine "
                f"({summary['stop_reason']}).",
                "",
            ]

    test = read_manifest(args.synthetic_test)
    test_images = load_images(test, model.config.image_size)
    test_truth, test_predicted = emotion_truth(test), predicted_emotions(model, test_images)
    by_style = scores_by(test, test_truth, test_predicted, "style")
    lines += [
        "## Held-out synthetic characters",
        "",
        f"{len(test)} stills of {test['character'].nunique()} characters never seen in training.",
        "",
        markdown_table(by_style),
        "",
        "Confusion matrix (rows: truth, columns: prediction):",
        "",
        markdown_table(confusion(test_truth, test_predicted), floatfmt=".0f"),
        "",
    ]
    results = {"synthetic_accuracy": float(by_style.loc["all", "accuracy"])}

    loso = leave_one_style_out(args.loso, test, test_images) if args.loso else None
    if loso is not None:
        lines += _section(
            "Leave one style out",
            "Each row: a model trained on the other three styles, tested on this style's held-out characters, "
            "against a reference trained on all four styles with the same data budget and training time.",
            markdown_table(loso),
        )
        results["loso_max_drop_points"] = float(loso["drop (points)"].max())

    longer = leave_one_style_out(args.loso_6_epochs, test, test_images) if args.loso_6_epochs else None
    if longer is not None:
        results["loso_6_epochs_max_drop_points"] = float(longer["drop (points)"].max())
    varied = leave_one_style_out(args.loso_varied, test, test_images) if args.loso_varied else None
    if varied is not None:
        table = _with_plain_drop(
            _with_plain_drop(varied, loso, "drop, plain, 3 epochs"), longer, "drop, plain, 6 epochs"
        )
        lines += _section(
            "Leave one style out, trained on varied looks too",
            "The same protocol (`make loso-varied`), every run reading the train split and the same stills drawn "
            "again off their styles' layouts (data/synthetic/train_varied, built by `make data`; "
            "training/data/synthetic.py, `LookVariation`): the same characters, expressions and scenes, each with "
            "other eye and mouth sizes and places, a larger or smaller head around them, other line widths, and in "
            "35 % of stills the eyes of another style (10 % keep their style's own layout). A run without a style "
            "also leaves out the varied stills that borrow that style's eyes; the reference reads them all. Three "
            "epochs of both sets are six epochs' worth of steps, so the plain runs trained for six epochs "
            "(`make loso-6-epochs`) are beside them: that column isolates the stills from the training length.",
            "Caveat: the variation's ranges were set knowing all four styles (e.g. how small realistic eyes are), "
            "so a held-out style is not quite unseen by the generator's designer; a fifth style drawn by someone "
            "else would be the fair test. The first probes of the variation also read this test split's realistic "
            "faces, which flatters that row; the validation split's characters give the same picture (this script "
            "with `--synthetic-test data/synthetic/val/manifest.csv`).",
            markdown_table(table),
        )
        if loso is None:
            lines += _plain_runs_absent(args)
        results["loso_varied_max_drop_points"] = float(varied["drop (points)"].max())

    cross_style = leave_one_style_out(args.loso_cross_style, test, test_images) if args.loso_cross_style else None
    if cross_style is not None:
        lines += _section(
            "Leave one style out, trained with the cross-style terms",
            "The same protocol (`make loso-cross-style`), every run also reading 16 style sets per step: one "
            "face drawn in each kept style (training/data/style_pairs.py, 64 px, training characters only; the "
            "held-out style is removed from them too), a consistency loss between the renderings and one style "
            "mix per set (training/cross_style.py).",
            markdown_table(_with_plain_drop(cross_style, loso, "drop without the terms")),
        )
        if loso is None:
            lines += _plain_runs_absent(args)
        results["loso_cross_style_max_drop_points"] = float(cross_style["drop (points)"].max())

    emoji = emoji_images = emoji_predicted = None
    if args.emoji and Path(args.emoji).is_file():
        emoji = read_manifest(args.emoji)
        emoji_images = load_images(emoji, model.config.image_size)
        truth, emoji_predicted = emotion_truth(emoji), predicted_emotions(model, emoji_images)
        by_source = scores_by(emoji, truth, emoji_predicted, "source")
        lines += [
            "## Held-out licensed emoji (drawn by real artists, never used in training)",
            "",
            "Twemoji (CC-BY 4.0), Noto Emoji (Apache-2.0), OpenMoji (CC BY-SA 4.0); labels from the emoji "
            "names (training/data/emoji.py). Caveat: the generator's artist conventions (tears, sweat, tints, "
            "squeezed eyes, cat faces, …) were designed while looking at these three sets and at which of "
            "them an early model got wrong, so this score is optimistic for other artists' work; a fresh "
            "artist-drawn set would be the fairer test. Only 9–27 images per emotion: one image is 4–11 points "
            "of that emotion's recall.",
            "",
            markdown_table(by_source),
            "",
            "Confusion matrix (rows: truth, columns: prediction):",
            "",
            markdown_table(confusion(truth, emoji_predicted), floatfmt=".0f"),
            "",
        ]
        results["emoji_accuracy"] = float(by_source.loc["all", "accuracy"])
        for emotion in WEAK_EMOTIONS:
            count = int((truth == EMOTIONS.index(emotion)).sum())
            results[f"emoji_recall_{emotion}"] = (_recall(truth, emoji_predicted, emotion), count)

    if args.candidate and args.candidate.is_file():
        shipped = _headline_scores(test, test_predicted, emoji, emoji_predicted)
        lines += _candidate_section(args, shipped, test, test_images, emoji, emoji_images)
    elif args.candidate:
        lines += [f"The candidate encoder `{args.candidate}` is not on this machine (`make train-candidate`).", ""]

    lines += ["## Against the targets", "", "| measure | value | target | met |", "|---|---|---|---|"]
    if "synthetic_accuracy" in results:
        value = results["synthetic_accuracy"]
        lines.append(
            f"| accuracy, held-out synthetic | {value:.3f} | ≥ {TARGETS['synthetic']} | "
            f"{'yes' if value >= TARGETS['synthetic'] else 'no'} |"
        )
    for key, label in (
        ("loso_max_drop_points", ""),
        ("loso_6_epochs_max_drop_points", ", plain, 6 epochs"),
        ("loso_varied_max_drop_points", ", varied looks too"),
        ("loso_cross_style_max_drop_points", ", cross-style terms"),
    ):
        if key in results:
            lines.append(_drop_target_row(label, results[key]))
    if "emoji_accuracy" in results:
        value = results["emoji_accuracy"]
        lines.append(
            f"| accuracy, held-out emoji | {value:.3f} | ≥ {TARGETS['emoji']} | "
            f"{'yes' if value >= TARGETS['emoji'] else 'no'} |"
        )
        for emotion in WEAK_EMOTIONS:
            value, count = results[f"emoji_recall_{emotion}"]
            lines.append(
                f"| {emotion} recall, held-out emoji ({count} images) | {value:.3f} | ≥ {TARGETS['emoji_recall']} | "
                f"{'yes' if value >= TARGETS['emoji_recall'] else 'no'} |"
            )
    lines += ["", f"_Evaluation took {time.monotonic() - started:.0f} s._", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--synthetic-test", type=Path, required=True)
    parser.add_argument("--emoji", type=Path)
    parser.add_argument("--loso", type=Path, help="folder with all-styles/ and without-<style>/ runs")
    parser.add_argument("--loso-6-epochs", type=Path, help="the same runs trained for 6 epochs, to compare")
    parser.add_argument(
        "--loso-varied", type=Path, help="the same runs also reading varied looks (train_varied), to compare"
    )
    parser.add_argument(
        "--loso-cross-style", type=Path, help="the same runs trained with the cross-style terms (--pairs), to compare"
    )
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="training runs whose summary to quote")
    parser.add_argument("--candidate", type=Path, help="an encoder to score beside the shipped one (not shipped)")
    parser.add_argument("--out", type=Path, default=Path("docs/results-expression.md"))
    args = parser.parse_args(argv)
    report = write_report(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
