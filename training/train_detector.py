"""Train face_detector on the detection scenes (training/data/detection.py).

    python -m training.data.detection --out data/detection
    python -m training.train_detector --network face_detector-cpu --data data/detection --out runs/face_detector-cpu
    cp runs/face_detector-cpu/best.pt weights/face_detector-cpu.pt

CenterNet targets on the stride-4 grid: a Gaussian bump per face centre (radius from the box size, as in
CenterNet, so a near miss of a big face is penalised less than of a small one), log width / height in grid cells
and the sub-cell centre offset at the centre cell. Loss: penalty-reduced focal loss on the heatmap plus L1 on sizes
and offsets at face centres. Augmentation per batch: horizontal flips, a zoom in or out (faces smaller and larger
than the data holds), colour gains and contrast. Early stopping on validation AP50 (the metric the detector is
judged by); the best checkpoint, metrics.jsonl and summary.json go to --out. A time budget bounds the run.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.data.detection import read_split
from training.networks import build_model, get_config
from training.networks.face_detector import STRIDE, decode_detections

LOSS_WEIGHTS = {"heatmap": 1.0, "size": 1.0, "offset": 1.0}


@dataclass
class DetectorTrainingOptions:
    network: str = "face_detector-cpu"
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 3
    seed: int = 0
    time_budget_s: float = 11 * 60
    threads: int = 2
    crop: tuple[int, int] = (128, 256)  # training windows (H, W): about half the pixels of a full input per step
    init: str | None = None  # start from this checkpoint's weights (a continued run) instead of a fresh network
    splits: tuple[str, ...] = ("train",)  # training splits of the data folder, pooled
    val_splits: tuple[str, ...] = ("val",)  # validation splits, pooled (early stopping on their AP50)
    bf16: bool = False  # measured: bf16 autocast is 2× slower than fp32 for this small network on this CPU


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: how far a centre may move while a box of this size keeps IoU ≥ min_overlap."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def build_targets(boxes_per_image: list[np.ndarray], grid_height: int, grid_width: int) -> dict[str, torch.Tensor]:
    """Boxes (input pixels, [N, 4] per image) → heatmap [B, 1, h, w], size / offset [B, 2, h, w], mask [B, 1, h, w]."""
    batch = len(boxes_per_image)
    heatmap = np.zeros((batch, 1, grid_height, grid_width), np.float32)
    size = np.zeros((batch, 2, grid_height, grid_width), np.float32)
    offset = np.zeros((batch, 2, grid_height, grid_width), np.float32)
    mask = np.zeros((batch, 1, grid_height, grid_width), np.float32)
    ys, xs = np.arange(grid_height)[:, None], np.arange(grid_width)[None, :]
    for index, boxes in enumerate(boxes_per_image):
        for x0, y0, x1, y1 in boxes:
            w, h = (x1 - x0) / STRIDE, (y1 - y0) / STRIDE
            if w <= 0.25 or h <= 0.25:
                continue
            cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
            col, row = min(int(cx), grid_width - 1), min(int(cy), grid_height - 1)
            radius = max(0.0, gaussian_radius(h, w))
            sigma = (2 * int(radius) + 1) / 6
            bump = np.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2))
            np.maximum(heatmap[index, 0], bump, out=heatmap[index, 0])
            heatmap[index, 0, row, col] = 1.0
            size[index, :, row, col] = (math.log(w), math.log(h))
            offset[index, :, row, col] = (cx - col, cy - row)
            mask[index, 0, row, col] = 1.0
    return {
        name: torch.from_numpy(value)
        for name, value in (("heatmap", heatmap), ("size", size), ("offset", offset), ("mask", mask))
    }


def detection_loss(outputs: dict, targets: dict) -> tuple[torch.Tensor, dict]:
    logits = outputs["heatmap_logits"].float()
    target = targets["heatmap"]
    prediction = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    negative_weight = (1 - target) ** 4
    positive_loss = torch.log(prediction) * (1 - prediction) ** 2 * positive
    negative_loss = torch.log(1 - prediction) * prediction**2 * negative_weight * (1 - positive)
    objects = positive.sum().clamp(min=1.0)
    heatmap = -(positive_loss.sum() + negative_loss.sum()) / objects
    mask = targets["mask"]
    size = (F.l1_loss(outputs["size"].float(), targets["size"], reduction="none") * mask).sum() / objects
    offset = (F.l1_loss(outputs["offset"].float(), targets["offset"], reduction="none") * mask).sum() / objects
    total = LOSS_WEIGHTS["heatmap"] * heatmap + LOSS_WEIGHTS["size"] * size + LOSS_WEIGHTS["offset"] * offset
    return total, {"heatmap": heatmap.item(), "size": size.item(), "offset": offset.item()}


def _clip_boxes(b: np.ndarray, original_area: np.ndarray, width: int, height: int) -> np.ndarray:
    b = b.copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    # a face mostly cut away by the window is no longer a face to find
    return b[(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) >= 0.5 * original_area]


def augment(
    images: np.ndarray, boxes: list[np.ndarray], rng: np.random.Generator, crop: tuple[int, int] | None = None
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """uint8 NHWC batch → float NCHW in [0, 1] with flips, one zoom per batch, per-image colour changes and, with
    `crop`, a random window per image (the network is convolutional: windows train it on the same pixel scale
    at a fraction of the cost)."""
    batch, height, width, _ = images.shape
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    boxes = [b.copy() for b in boxes]
    flips = rng.random(batch) < 0.5
    if flips.any():
        x[torch.from_numpy(flips)] = x[torch.from_numpy(flips)].flip(3)
        for index in np.flatnonzero(flips):
            if len(boxes[index]):
                boxes[index][:, [0, 2]] = width - boxes[index][:, [2, 0]]
    if rng.random() < 0.5:
        zoom = float(rng.uniform(0.7, 1.3))
        new_h, new_w = round(height * zoom), round(width * zoom)
        scaled = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=zoom < 1)
        # place the zoomed batch on a black canvas (zoom out) or cut a window from it (zoom in)
        dx = int(rng.integers(min(0, width - new_w), max(0, width - new_w) + 1))
        dy = int(rng.integers(min(0, height - new_h), max(0, height - new_h) + 1))
        canvas = torch.zeros_like(x)
        src_x0, src_y0 = max(0, -dx), max(0, -dy)
        dst_x0, dst_y0 = max(0, dx), max(0, dy)
        w = min(new_w - src_x0, width - dst_x0)
        h = min(new_h - src_y0, height - dst_y0)
        canvas[:, :, dst_y0 : dst_y0 + h, dst_x0 : dst_x0 + w] = scaled[:, :, src_y0 : src_y0 + h, src_x0 : src_x0 + w]
        x = canvas
        for index, b in enumerate(boxes):
            if len(b):
                area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) * zoom**2
                boxes[index] = _clip_boxes(b * zoom + [dx, dy, dx, dy], area, width, height)
    if crop is not None and crop != (height, width):
        crop_h, crop_w = crop
        windows = torch.empty(batch, 3, crop_h, crop_w)
        for index in range(batch):
            y0, x0 = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
            windows[index] = x[index, :, y0 : y0 + crop_h, x0 : x0 + crop_w]
            b = boxes[index]
            if len(b):
                area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
                boxes[index] = _clip_boxes(b - [x0, y0, x0, y0], area, crop_w, crop_h)
        x = windows
    gains = torch.from_numpy(rng.uniform(0.8, 1.2, (batch, 3, 1, 1)).astype(np.float32))
    contrast = torch.from_numpy(rng.uniform(0.75, 1.25, (batch, 1, 1, 1)).astype(np.float32))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * gains
    return x.clamp_(0, 1), boxes


def boxes_of(records: list[dict]) -> list[np.ndarray]:
    return [np.asarray(r["boxes"], dtype=np.float32).reshape(-1, 4) for r in records]


@torch.no_grad()
def predict(model, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, K, 4] (input pixels) and scores [N, K] exactly as the served module decodes them."""
    config = model.config
    model.eval()
    all_boxes, all_scores = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).permute(0, 3, 1, 2).float() / 255
        boxes, scores = decode_detections(model(x), config.input_height, config.input_width, config.max_detections)
        scale = np.array([config.input_width, config.input_height] * 2, np.float32)
        all_boxes.append(boxes.numpy() * scale)
        all_scores.append(scores.numpy())
    return np.concatenate(all_boxes), np.concatenate(all_scores)


def read_splits(data_dir: Path, splits: tuple[str, ...]) -> tuple[np.ndarray, list[dict]]:
    """Several built splits as one (images, records)."""
    parts = [read_split(data_dir / split) for split in splits]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([images for images, _ in parts]), [r for _, records in parts for r in records]


def train(data_dir: Path, out_dir: Path, options: DetectorTrainingOptions) -> dict:
    from training.evaluate_detector import detection_scores

    started = time.monotonic()
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = get_config(options.network)
    grid_h, grid_w = config.grid

    train_images, train_records = read_splits(data_dir, options.splits)
    val_images, val_records = read_splits(data_dir, options.val_splits)
    if train_images.shape[1:3] != (config.input_height, config.input_width):
        raise SystemExit(
            f"{data_dir}: scenes are {train_images.shape[1]}x{train_images.shape[2]} but "
            f"{options.network} takes {config.input_height}x{config.input_width}"
        )
    train_boxes, val_boxes = boxes_of(train_records), boxes_of(val_records)
    print(
        f"[train] {options.network}: {len(train_images)} training / {len(val_images)} validation scenes "
        f"({sum(map(len, train_boxes))} faces; loaded in {time.monotonic() - started:.0f} s)",
        flush=True,
    )

    model = build_model(options.network)
    if options.init:
        checkpoint = torch.load(options.init, map_location="cpu", weights_only=True)
        if checkpoint["network"] != options.network:
            raise SystemExit(f"--init {options.init} holds {checkpoint['network']}, not {options.network}")
        model.load_state_dict(checkpoint["state_dict"])
        print(f"[train] continuing from {options.init} (epoch {checkpoint.get('epoch')})", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    steps_per_epoch = len(train_images) // options.batch_size
    total_steps = options.epochs * steps_per_epoch
    train_started = time.monotonic()

    def learning_rate(step: int) -> float:
        # Warm-up then cosine decay over whichever runs out first, the epochs or the time budget, so a run cut
        # short by a busy machine still ends at a low learning rate instead of mid-schedule.
        budget = max(options.time_budget_s - (train_started - started), 1.0)
        progress = min(1.0, max(step / total_steps, (time.monotonic() - train_started) / budget))
        warmup = min(1.0, (step + 1) / (0.05 * total_steps))
        return options.learning_rate * warmup * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    global_step = 0
    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    best = {"val_ap50": -1.0}
    stale, stop_reason, epoch_seconds = 0, "completed all epochs", 0.0
    for epoch in range(1, options.epochs + 1):
        if time.monotonic() - started + 0.3 * epoch_seconds > options.time_budget_s:
            stop_reason = f"time budget of {options.time_budget_s:.0f} s reached"
            break
        epoch_start = time.monotonic()
        model.train()
        order = rng.permutation(len(train_images))
        running = {"loss": 0.0, "heatmap": 0.0, "size": 0.0, "offset": 0.0}
        done = 0
        progress = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{options.epochs}", leave=False, mininterval=5)
        for step in progress:
            if time.monotonic() - started > options.time_budget_s:
                stop_reason = f"time budget of {options.time_budget_s:.0f} s reached (in epoch {epoch})"
                break
            picked = np.sort(order[step * options.batch_size : (step + 1) * options.batch_size])
            images, boxes = augment(train_images[picked], [train_boxes[i] for i in picked], rng, options.crop)
            targets = build_targets(boxes, images.shape[2] // STRIDE, images.shape[3] // STRIDE)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=options.bf16):
                outputs = model(images)
            loss, parts = detection_loss(outputs, targets)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(global_step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            global_step += 1
            done += 1
            running["loss"] += loss.item()
            for key, value in parts.items():
                running[key] += value
            progress.set_postfix(loss=f"{running['loss'] / done:.3f}")
        boxes, scores = predict(model, val_images)
        scores_at = detection_scores(boxes, scores, val_boxes, score_threshold=0.3)
        record = {
            "epoch": epoch,
            "steps": done,
            **{f"train_{k}": v / max(done, 1) for k, v in running.items()},
            "val_ap50": scores_at["ap50"],
            "val_recall": scores_at["recall"],
            "val_precision": scores_at["precision"],
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.monotonic() - epoch_start,
        }
        epoch_seconds = record["seconds"]
        with metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(
            f"[train] epoch {epoch}: loss {record['train_loss']:.3f} val AP50 {record['val_ap50']:.3f} "
            f"recall {record['val_recall']:.3f} precision {record['val_precision']:.3f} "
            f"({record['seconds']:.0f} s)",
            flush=True,
        )
        checkpoint = {"network": options.network, "state_dict": model.state_dict(), "epoch": epoch, "metrics": record}
        torch.save(checkpoint, out_dir / "last.pt")
        if record["val_ap50"] > best["val_ap50"]:
            best, stale = record, 0
            torch.save(checkpoint, out_dir / "best.pt")
        else:
            stale += 1
            if stale >= options.patience and not stop_reason.startswith("time budget"):
                stop_reason = f"early stop: no validation AP50 improvement for {options.patience} epochs"
                break
        if stop_reason.startswith("time budget"):
            break
    summary = {
        "network": options.network,
        "best_epoch": best.get("epoch"),
        "best": best,
        "stop_reason": stop_reason,
        "train_scenes": len(train_images),
        "val_scenes": len(val_images),
        "wall_seconds": time.monotonic() - started,
        "options": asdict(options),
        "data": str(data_dir),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"[train] done in {summary['wall_seconds']:.0f} s ({stop_reason}); best epoch {best.get('epoch')} "
        f"val AP50 {best.get('val_ap50', float('nan')):.3f} → {out_dir / 'best.pt'}",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default=DetectorTrainingOptions.network)
    parser.add_argument("--data", type=Path, default=Path("data/detection"))
    parser.add_argument("--out", type=Path, required=True)
    for name in ("epochs", "batch_size", "patience", "seed", "threads"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(DetectorTrainingOptions, name))
    for name in ("learning_rate", "weight_decay", "time_budget_s"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(DetectorTrainingOptions, name))
    parser.add_argument(
        "--crop",
        type=int,
        nargs=2,
        default=DetectorTrainingOptions.crop,
        metavar=("H", "W"),
        help="training window size (multiples of 32; the full input size turns cropping off)",
    )
    parser.add_argument("--init", help="checkpoint to continue from (its weights; a fresh optimiser and schedule)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (slower here; for CPUs where it is not)")
    parser.add_argument("--splits", nargs="+", default=list(DetectorTrainingOptions.splits), help="training splits")
    parser.add_argument("--val-splits", nargs="+", default=list(DetectorTrainingOptions.val_splits))
    args = parser.parse_args(argv)
    options = DetectorTrainingOptions(
        network=args.network,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        patience=args.patience,
        seed=args.seed,
        time_budget_s=args.time_budget_s,
        threads=args.threads,
        crop=tuple(args.crop),
        init=args.init,
        bf16=args.bf16,
        splits=tuple(args.splits),
        val_splits=tuple(args.val_splits),
    )
    train(args.data, args.out, options)


if __name__ == "__main__":
    main()
