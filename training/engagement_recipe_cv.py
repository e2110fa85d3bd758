"""Does the full engagement model beat the pooled-feature baselines when each fold is trained as the shipped model is?

    python -m training.engagement_recipe_cv [--data data/clips] [--workers 2]     # ~25 min on 2 cores

`python -m training.evaluate_engagement` cross-validates seven models with a short recipe (≤ 12 epochs, patience 3)
to keep its run near half an hour, and its full model stopped as early as epoch 1 in some folds. This trains only
the full model, on the same five folds, with the shipped recipe (training/train_engagement.py's defaults as
`make engagement` runs them: 4 curve epochs, ≤ 30 joint epochs, patience 5), fits the SVM and the random forest on
the same folds, and writes docs/results-engagement-recipe.md: the three side by side and the full model minus each
baseline, paired by fold.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from training.evaluate_engagement import (
    BASELINES,
    FULL,
    _baseline_fold,
    _train_fold,
    cv_folds,
    paired_table,
    scores,
    summary_table,
)
from training.evaluation import markdown_table

# the Makefile's `make engagement` for each member, after pretraining (which this CV leaves out)
SHIPPED_RECIPE = {"curve_epochs": 4, "max_epochs": 30, "patience": 5}
COLUMNS = ["accuracy", "macro-F1", "AUC", "Spearman vs observed", "Spearman vs oracle", "MAE"]


def main(argv: list[str] | None = None) -> None:
    from training.data.engagement_dataset import load_engagement_split

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/clips"))
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path("docs/results-engagement-recipe.md"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    arrays = load_engagement_split(args.data / "train")
    folds = cv_folds(arrays)
    jobs = [
        (FULL, fold, str(args.data), train_index, test_index, dict(SHIPPED_RECIPE))
        for fold, (train_index, test_index) in enumerate(folds)
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_train_fold, jobs))
    for fold, (train_index, test_index) in enumerate(folds):
        for name in BASELINES:
            predictions, costs = _baseline_fold(name, arrays.subset(train_index), arrays.subset(test_index), fold)
            results.append((name, fold, predictions, costs))
    rows, epochs = [], []
    for name, fold, predictions, costs in results:
        rows.append({"model": name, "fold": fold, **scores(predictions, arrays.subset(folds[fold][1]))})
        if name == FULL:
            epochs.append(int(costs["epochs"]))
    frame = pd.DataFrame(rows)
    summary = summary_table(frame, [FULL, *BASELINES], COLUMNS)
    paired = paired_table(frame, list(BASELINES), ["accuracy", "macro-F1", "Spearman vs observed"])
    verdicts = "; ".join(
        f"{column}: **{'yes' if all('✓' in str(paired.loc[name, f'Δ {column}']) for name in BASELINES) else 'no'}**"
        for column in ("accuracy", "macro-F1", "Spearman vs observed")
    )
    command = "python -m training.engagement_recipe_cv " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# Engagement model: cross-validated with the shipped recipe",
        "",
        "Written by `training/engagement_recipe_cv.py` (module docstring); every number below comes from one run of",
        "",
        f"    {command.strip()}",
        "",
        f"({(time.monotonic() - started) / 60:.1f} min on this machine). The same {len(folds)} stratified folds of the "
        f"{len(arrays)} training clips as docs/results-engagement.md; the full model trained per fold as "
        f"`make engagement` trains each member of the shipped ensemble on the served rows "
        f"({SHIPPED_RECIPE['curve_epochs']} curve epochs, ≤ {SHIPPED_RECIPE['max_epochs']} joint epochs, patience "
        f"{SHIPPED_RECIPE['patience']}, early stopping on 15 % of the fold's training clips), one network per fold, "
        "without the members' pretraining on ideal-perception clips (which would triple this run). Mean ± 95 % "
        "t-interval over the folds.",
        "",
        markdown_table(summary),
        "",
        "Paired by fold (full model minus the baseline; ✓ where the 95 % interval lies above 0):",
        "",
        markdown_table(paired),
        "",
        f"Best joint epoch per fold: {', '.join(map(str, epochs))}. Does the full model beat both the SVM and the "
        f"random forest by a margin outside the fold intervals with the shipped recipe? {verdicts}.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
