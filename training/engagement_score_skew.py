"""How much the engagement model depends on the scale of its detection-score feature (a known train/serve skew).

    python -m training.engagement_score_skew [--data data/clips] [--weights weights/engagement-cpu.pt]
    python -m training.engagement_score_skew --data data/clips --served-data data/clips-served

The second form measures a detector change directly: `--data` holds the test split built with the detector response
the model was trained with, `--served-data` the same clips built with the response of the detector now served
(`python -m benchmarks.detector_response`, then `python -m training.data.engagement_dataset --splits test`). Every
row of the two splits is the same clip and the same crops; only the detection scores and missed faces differ.

Until 2026-12 the engagement training data simulated the per-step detection score at about 0.89 for visible faces
while the served face_detector scores true faces around 0.55; the training rows now draw it from the detector's
measured response (training/data/detector_response.py). This moves the test split's detection-score column into a
given range, keeping each cell's rank (a face that was more visible keeps the higher score), and reports the test
metrics of the shipped model against the unchanged features: how much a detector whose scores drift (a retrained
detector, another flavour) would cost before the response is measured again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facecast.engagement_features import FEATURE_NAMES

SCORE_COLUMN = FEATURE_NAMES.index("detection_score")


def rescaled(features: np.ndarray, mask: np.ndarray, mean: float, sd: float) -> np.ndarray:
    """A copy with the detection score of observed cells standardised and moved to (mean, sd), clipped to [0, 1]."""
    moved = features.copy()
    column = features[..., SCORE_COLUMN].astype(np.float32)
    observed = column[mask]
    moved[..., SCORE_COLUMN][mask] = np.clip(mean + (observed - observed.mean()) / observed.std() * sd, 0, 1)
    return moved


def main(argv: list[str] | None = None) -> None:
    import torch

    from training.checkpoints import load_checkpoint
    from training.data.engagement_dataset import load_engagement_split
    from training.evaluate_engagement import scores
    from training.train_engagement import predict

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/clips"))
    parser.add_argument("--weights", type=Path, default=Path("weights/engagement-cpu.pt"))
    parser.add_argument("--means", type=float, nargs="+", default=[0.55, 0.70])
    parser.add_argument("--sd", type=float, default=0.08)
    parser.add_argument(
        "--served-data", type=Path, help="the same test clips built with the served detector's response"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    test = load_engagement_split(args.data / "test")
    model = load_checkpoint(args.weights)
    column = test.features[..., SCORE_COLUMN].astype(np.float32)[test.mask]
    print(f"simulated detection score on observed cells: mean {column.mean():.3f}, sd {column.std():.3f}")
    base = scores(predict(model, test), test)
    print(
        f"unchanged: accuracy {base['accuracy']:.3f}, Spearman vs observed {base['Spearman vs observed']:.3f}, "
        f"MAE {base['MAE']:.3f}"
    )
    if args.served_data:
        served = load_engagement_split(args.served_data / "test")
        if len(served) != len(test):
            raise SystemExit(f"{args.served_data}/test holds {len(served)} clips, {args.data}/test {len(test)}")
        served_column = served.features[..., SCORE_COLUMN].astype(np.float32)[served.mask]
        result = scores(predict(model, served), served)
        print(
            f"served detector's response: {int(served.mask.sum())} face steps seen (was {int(test.mask.sum())}), "
            f"detection score mean {served_column.mean():.3f}, sd {served_column.std():.3f}; accuracy "
            f"{result['accuracy']:.3f}, Spearman vs observed {result['Spearman vs observed']:.3f}, "
            f"MAE {result['MAE']:.3f}"
        )
        return
    for mean in args.means:
        shifted = test.subset(np.arange(len(test)))
        shifted.features = rescaled(test.features, test.mask, mean, args.sd)
        result = scores(predict(model, shifted), shifted)
        print(
            f"detection score moved to mean {mean:.2f} (sd {args.sd:.2f}): accuracy {result['accuracy']:.3f}, "
            f"Spearman vs observed {result['Spearman vs observed']:.3f}, MAE {result['MAE']:.3f}"
        )


if __name__ == "__main__":
    main()
