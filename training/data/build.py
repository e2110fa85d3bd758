"""Build every training and evaluation data set (`make data`).

    python -m training.data.build [--out data] [--train 24000] [--train-varied 24000] [--val 2000] [--test 4000]
        [--skip-emoji]

Synthetic splits hold disjoint characters, so validation and test measure recognition of characters the model has
never seen. `train_varied` draws the train split's stills again (same seeds: same characters, expressions and
scenes) off their styles' layouts (training/data/synthetic.LookVariation): the leave-one-style-out runs train on
it. The emoji set (real artist-drawn faces, fetched with npm) is only ever used for evaluation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.data.synthetic import build_stills

# Character-id ranges per split (disjoint): ids are "c%05d".
SPLITS = {"train": (0, 1200, 0), "val": (1200, 1300, 1), "test": (1300, 1500, 2)}  # first id, end id, seed


def character_ids(first: int, end: int) -> list[str]:
    return [f"c{i:05d}" for i in range(first, end)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=24000)
    parser.add_argument("--train-varied", type=int, default=24000)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--test", type=int, default=4000)
    parser.add_argument("--skip-emoji", action="store_true")
    args = parser.parse_args(argv)
    for folder, split, count in (("train", "train", args.train), ("train_varied", "train", args.train_varied),
                                 ("val", "val", args.val), ("test", "test", args.test)):
        first, end, seed = SPLITS[split]
        manifest = build_stills(args.out / "synthetic" / folder, count=count, size=args.size, seed=seed,
                                character_ids=character_ids(first, end), vary_looks=folder == "train_varied")
        print(f"[data] synthetic {folder}: {count} stills → {manifest}", flush=True)
    if not args.skip_emoji:
        from training.data.emoji import main as build_emoji

        build_emoji(["--out", str(args.out / "emoji")])


if __name__ == "__main__":
    main()
