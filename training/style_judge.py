"""Train a style judge or a critic (training/networks/style_judge.py) for the style mapper (issue 15).

    python -m training.style_judge --role judge --out runs/mapping/style_judge.pt     # the second judge
    python -m training.style_judge --role critic --out runs/mapping/style_critic.pt   # a loss term for training
    python -m training.style_judge --role params-critic --out runs/mapping/params_critic.pt  # the override loss

The two roles differ only in what they learn from, so the mapper can never have been trained against the judge:
  judge   renderings of the "val" character range (c01200–c01299) drawn with their own scene seed ("judge" sets,
          training/data/style_pairs.py), plus the licensed emoji of data/emoji/manifest.csv (label: cartoon)
  critic  renderings of the mapper's own training characters (c00000–c01199, data/style_pairs/train)
The params critic learns, from the critic's renderings, the four action parameters each was drawn with. All are
checked on the held-out test characters (c01300–c01499), which none sees.

Mapped pictures are softer than renderings, and a judge that calls every soft picture "realistic" would measure
sharpness, not style; so training pictures are blurred, rescaled and jittered at random (augment below).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facecast.vocab import ACTION_PARAMS, STYLES
from training.data.style_pairs import EDITED, build_style_sets, load_style_sets
from training.networks.style_judge import (
    CRITIC,
    JUDGE,
    PARAMS_CRITIC,
    StyleJudge,
    StyleJudgeConfig,
    save_style_judge,
)

SIZE = 128


def rendered_styles(sets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every rendering of every set (the four styles and the edited one) with its style label."""
    images = np.asarray(sets["images"])
    count = len(images)
    labels = np.concatenate([np.tile(np.arange(len(STYLES)), (count, 1)), np.asarray(sets["edited_style"])[:, None]], 1)
    return images.reshape(-1, SIZE, SIZE, 3), labels.reshape(-1).astype(np.int64)


def rendered_params(sets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every rendering of every set with the action parameters it was drawn with, float [N, 4]."""
    images = np.asarray(sets["images"])
    return images.reshape(-1, SIZE, SIZE, 3), np.asarray(sets["params"], np.float32).reshape(-1, len(ACTION_PARAMS))


def emoji_faces(manifest: Path) -> np.ndarray:
    from facecast.media.images import load_face
    from training.data.manifest import read_manifest

    frame = read_manifest(manifest)
    return np.stack([load_face(path, SIZE) for path in frame["path"]])


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (sigma 0 leaves the image as it is)."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernels = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)
    b, c, h, w = images.shape
    x = images.reshape(1, b * c, h, w)
    kx = kernels.repeat_interleave(c, 0)[:, None, None, :]
    ky = kernels.repeat_interleave(c, 0)[:, None, :, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kx, groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), ky, groups=b * c)
    return x.reshape(b, c, h, w)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """float [B, 3, S, S]: random flip, blur (σ 0–1.5 px), 64-px round trip, brightness/contrast ±10 %."""
    b = len(images)
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    flip = rand(b) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    images = _blur(images, 1.5 * rand(b) * (rand(b) < 0.6))
    small = rand(b) < 0.3
    if small.any():
        round_trip = F.interpolate(F.avg_pool2d(images[small], 2), scale_factor=2.0, mode="bilinear")
        images = images.clone()
        images[small] = round_trip
    gain = 1 + 0.2 * (rand(b, 1, 1, 1) - 0.5)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + 0.2 * (rand(b, 1, 1, 1) - 0.5)
    return (((images - mean) * contrast + mean) * gain).clamp(0, 1)


@torch.no_grad()
def predictions(model: StyleJudge, images: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch])).permute(0, 3, 1, 2).float() / 255
        out.append(model(x).numpy())
    return np.concatenate(out)


def accuracy(model: StyleJudge, images: np.ndarray, labels: np.ndarray) -> float:
    return float((predictions(model, images).argmax(1) == labels).mean())


def params_error(model: StyleJudge, images: np.ndarray, params: np.ndarray) -> float:
    """Mean absolute error of the params critic's reading, over every picture and parameter."""
    return float(np.abs(predictions(model, images) - params).mean())


def train_style_judge(
    images: np.ndarray,
    labels: np.ndarray,  # style index [N] for a style task, action parameters [N, 4] for the params task
    epochs: int,
    batch: int = 64,
    seed: int = 0,
    config: StyleJudgeConfig = JUDGE,
) -> tuple[StyleJudge, list[dict]]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = StyleJudge(config)
    steps = epochs * (len(images) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    history = []
    started = time.perf_counter()
    for step in range(steps):
        model.train()
        rows = torch.randint(len(images), (batch,), generator=generator).numpy()
        x = torch.from_numpy(images[rows]).permute(0, 3, 1, 2).float() / 255
        if config.task == "style":
            loss = F.cross_entropy(model(augment(x, generator)), torch.from_numpy(labels[rows]), label_smoothing=0.05)
        else:
            # the flip of augment() mirrors the face, which leaves the four (symmetric) parameters as they are
            loss = F.l1_loss(model(augment(x, generator)), torch.from_numpy(labels[rows]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            history.append(
                {"step": step, "loss": round(loss.item(), 4), "elapsed_s": round(time.perf_counter() - started)}
            )
            print(
                f"[style-judge] step {step}/{steps} loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return model.eval(), history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("judge", "critic", "params-critic"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sets", type=int, default=3000, help="style sets to learn from (5 renderings each)")
    parser.add_argument(
        "--train-data", type=Path, default=Path("data/style_pairs/train"), help="critic and params critic only"
    )
    parser.add_argument("--emoji", type=Path, default=Path("data/emoji/manifest.csv"), help="judge only")
    parser.add_argument("--emoji-repeats", type=int, default=10, help="how often each emoji is in the data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--test-sets", type=int, default=300)
    parser.add_argument(
        "--architecture",
        choices=("judge", "critic"),
        help="network shape (default: the role's own; a critic shaped like the judge is an ablation)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    emoji = np.zeros((0, SIZE, SIZE, 3), np.uint8)
    if args.role == "judge":
        images, labels = rendered_styles(build_style_sets("judge", args.sets, SIZE))
        emoji = emoji_faces(args.emoji) if args.emoji.is_file() else emoji
        if len(emoji):
            images = np.concatenate([images] + [emoji] * args.emoji_repeats)
            labels = np.concatenate([labels, np.full(len(emoji) * args.emoji_repeats, STYLES.index("cartoon"))])
        else:
            print(f"[style-judge] {args.emoji} missing (`make emoji`): judging from renderings alone", flush=True)
    else:
        sets = load_style_sets(args.train_data)
        reader = rendered_params if args.role == "params-critic" else rendered_styles
        images, labels = reader({k: np.asarray(v[: args.sets]) for k, v in sets.items()})
    if args.role == "params-critic":
        config = PARAMS_CRITIC
    else:
        config = JUDGE if (args.architecture or args.role) == "judge" else CRITIC
    model, history = train_style_judge(images, labels, args.epochs, config=config)
    test_sets = build_style_sets("test", args.test_sets, SIZE)
    four = np.tile(np.arange(EDITED + 1) < EDITED, args.test_sets)  # the four plain renderings of each set
    if args.role == "params-critic":
        test_images, test_params = rendered_params(test_sets)
        # every rendering, the edited one too: its parameters are what an override asks for
        measured = {"test_params_mae": round(params_error(model, test_images, test_params), 4)}
        measured["test_renderings"] = int(len(test_images))
    else:
        test_images, test_labels = rendered_styles(test_sets)
        measured = {"test_accuracy": round(accuracy(model, test_images[four], test_labels[four]), 4)}
        measured["test_renderings"] = int(four.sum())
    summary = {
        "role": args.role,
        "images": int(len(images)),
        "emoji": int(len(emoji)),
        "epochs": args.epochs,
        **measured,
        "wall_s": round(time.perf_counter() - started, 1),
        "history": history,
    }
    save_style_judge(model, args.out, **{k: v for k, v in summary.items() if k != "history"})
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    shown = ", ".join(f"{k} {v}" for k, v in measured.items())
    print(f"[style-judge] {args.role}: {shown} → {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
