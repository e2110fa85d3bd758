"""Why the style mapper recolours instead of redrawing (issue 15): diagnostics and ablations, measured.

    python -m training.mapping_ablations diagnose [--init runs/mapping/style_mapper-stage1/best.pt]
    python -m training.mapping_ablations train [--runs runs/mapping-ablations] [--time-budget-s 300] [--only NAME..]
    python -m training.mapping_ablations report [--runs runs/mapping-ablations]   # → docs/results-mapping.md
    python -m training.mapping_ablations stages [--mapping-runs runs/mapping]     # → which checkpoint ships

`diagnose` asks a trained mapper three questions, without training anything:
  1. how much of the output comes through Conv1's full-resolution skip (the output with the skip zeroed);
  2. how much the output depends on the target style at all (the four targets' outputs for one source, against how
     much the four true renderings differ);
  3. how strong each loss's pull on the mapped picture is (the gradient norm of each weighted loss term with
     respect to the picture, at the trained weights): is the style signal drowned by paired L1?
`train` runs every variant of ABLATIONS from the same starting point for the same wall-clock budget, one after
another (2 cores: side by side would only halve each); `report` measures each on validation pairs (characters
c01200–c01299, never trained on; the test characters stay for the final numbers) by both judges and writes the
`mapping-ablations` section of docs/results-mapping.md, which training/evaluate_mapping.py keeps.

`stages` measures the shipped recipe's last two stages (training/style_mapper_suite.py) the same way, adds how
well an override is followed, and says which checkpoint ships (STAGE_RULE); `make mapper` copies that one.

The judges: judge 1 is the shipped expression_encoder (in torch here, the graph Triton serves; 64-px input by 2×2
averaging, as evaluate_mapping does with PIL's box filter), judge 2 the separately trained style judge
(training/style_judge.py, runs/mapping/style_judge.pt). Judge 2 is never a training loss; judge 1 is not one in the
ablations, but stage 3 trains with a perceptual loss on its features (so from stage 3 on, judge 2 and the pictures'
distance to the truth are the measurements the mapper never saw).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facecast.config import PROJECT_ROOT
from facecast.vocab import STYLES
from training.data.style_pairs import EDITED, load_style_sets
from training.evaluate_mapping import ABLATION_SECTION, STAGES_SECTION_NAME
from training.evaluation import markdown_table

DOC = PROJECT_ROOT / "docs" / "results-mapping.md"
SECTION = ABLATION_SECTION
# Stage 1 of the mapper's recipe (training/style_mapper_suite.py): the weights shipped before issue 15, trained on
# an H100 with seed 003's recipe as first built. Every ablation starts from it.
STAGE1 = PROJECT_ROOT / "runs" / "mapping" / "style_mapper-stage1" / "best.pt"
ENCODER = PROJECT_ROOT / "weights" / "expression_encoder-cpu.pt"
JUDGE = PROJECT_ROOT / "runs" / "mapping" / "style_judge.pt"
CRITIC = PROJECT_ROOT / "runs" / "mapping" / "style_critic.pt"
# the critic's data with the judge's architecture: `python -m training.style_judge --role critic --architecture judge`
TWIN_CRITIC = PROJECT_ROOT / "runs" / "mapping" / "style_critic-twin.pt"
PARAMS_CRITIC = PROJECT_ROOT / "runs" / "mapping" / "params_critic.pt"  # stage 4's override loss

# Each variant: (what it tests, arguments of training.train_style_mapper). All start from the same weights
# (--init) and train for the same budget; "control" continues the shipped design unchanged, so every other row is
# read against it, not against the shipped weights (which had less training).
ABLATIONS: dict[str, tuple[str, list[str]]] = {
    "control": ("the shipped design, trained on", []),
    "skip-none": ("no Conv1 skip: the decoder draws from the 32×32 content alone", ["--config", "skip=none"]),
    "skip-gated": ("Conv1 skip through a learned per-pixel gate", ["--config", "skip=gated"]),
    "wide-decoder": ("upsampling path 2× wider (64 channels)", ["--config", "upsample_channels=64"]),
    "no-pull-back": (
        "no loss that pulls the picture back to the source (cycle, re-encoded latent, own style head off)",
        ["--weight", "cyc=0", "latent=0", "self_style=0"],
    ),
    "style-critic": (
        "a frozen style classifier (trained apart, on training characters; 64 px, group norm) as a loss, weight 2",
        ["--weight", "critic=2", "--style-critic", str(CRITIC)],
    ),
    "style-critic-twin": (
        "the same, with a critic of judge 2's own architecture (how much a twin of a judge flatters it)",
        ["--weight", "critic=2", "--style-critic", str(TWIN_CRITIC)],
    ),
    "rec-3": ("paired L1 weight 3 instead of 10", ["--weight", "rec=3"]),
}


# --------------------------------------------------------------------------------------------------------------------
# the judges, in torch
# --------------------------------------------------------------------------------------------------------------------


class Judges:
    """Judge 1 (the shipped expression_encoder) and judge 2 (the style judge) on float pictures in [0, 1]."""

    def __init__(self, encoder: Path = ENCODER, judge: Path = JUDGE):
        from training.checkpoints import load_checkpoint
        from training.networks.style_judge import load_style_judge

        self.encoder = load_checkpoint(encoder)
        self.judge = load_style_judge(judge) if Path(judge).is_file() else None

    @torch.no_grad()
    def read(self, pictures: torch.Tensor) -> dict[str, np.ndarray]:
        pictures = (pictures * 255).round() / 255  # as served: uint8 out
        size = self.encoder.config.image_size
        small = F.avg_pool2d(pictures, pictures.shape[-1] // size) if pictures.shape[-1] != size else pictures
        out = self.encoder(small)
        read = {
            "emotion": out["emotion_logits"].argmax(1).numpy(),
            "style": out["style_logits"].argmax(1).numpy(),
            "params": out["action_params"].numpy(),
        }
        if self.judge is not None:
            read["style2"] = self.judge(pictures).argmax(1).numpy()
        return read


def ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    from training.evaluate_mapping import ssim_uint8

    to_uint8 = lambda x: (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    return ssim_uint8(to_uint8(a), to_uint8(b))


def validation_sets(data: Path, count: int) -> dict[str, np.ndarray]:
    sets = load_style_sets(data)
    return {name: np.asarray(array[:count]) for name, array in sets.items()}


def pictures(sets: dict[str, np.ndarray], rows: np.ndarray, styles: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(sets["images"][rows, styles])).permute(0, 3, 1, 2).float() / 255


def all_pairs(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(set, source, target) for every ordered pair of different styles of `count` sets."""
    ordered = [(s, t) for s in range(len(STYLES)) for t in range(len(STYLES)) if s != t]
    sets = np.repeat(np.arange(count), len(ordered))
    source = np.tile([s for s, _ in ordered], count)
    target = np.tile([t for _, t in ordered], count)
    return sets, source, target


@torch.no_grad()
def map_pairs(model, sets, rows, source, target, batch: int = 48, **mapper_kwargs) -> torch.Tensor:
    from training.train_style_mapper import map_images

    out = []
    for start in range(0, len(rows), batch):
        part = slice(start, start + batch)
        out.append(
            map_images(model, pictures(sets, rows[part], source[part]), torch.from_numpy(target[part]), **mapper_kwargs)
        )
    return torch.cat(out)


def measure(model, sets: dict[str, np.ndarray], judges: Judges, count: int) -> dict[str, float]:
    """PSNR/SSIM against the truth, style conformity by both judges, expression preserved, and how different the
    four targets' outputs of one source are (relative to how different the true renderings are)."""
    from training.train_style_mapper import psnr

    rows, source, target = all_pairs(count)
    mapped = map_pairs(model, sets, rows, source, target)
    truth = pictures(sets, rows, target)
    src = pictures(sets, rows, source)
    read_mapped, read_source = judges.read(mapped), judges.read(src)
    mapped_psnr, copy_psnr = psnr(mapped, truth), psnr(src, truth)
    result = {
        "pairs": len(rows),
        "PSNR": float(mapped_psnr.mean()),
        "PSNR − copy": float((mapped_psnr - copy_psnr).mean()),  # gain over handing back the source unchanged
        "beats copy": float((mapped_psnr > copy_psnr).float().mean()),  # share of pairs
        "SSIM": float(ssim(mapped, truth).mean()),
        "style (judge 1)": float((read_mapped["style"] == target).mean()),
        "expression preserved": float((read_mapped["emotion"] == read_source["emotion"]).mean()),
        "target spread": target_spread(mapped, truth, rows, source),
    }
    if "style2" in read_mapped:
        result["style (judge 2)"] = float((read_mapped["style2"] == target).mean())
    return result


def target_spread(mapped: torch.Tensor, truth: torch.Tensor, rows, source) -> float:
    """Mean |difference| between the outputs one source gets for two different targets, over the same for the true
    renderings: 1 = the outputs differ as much as the styles do, 0 = one picture whatever the target."""
    ratios = []
    keys = rows * len(STYLES) + source
    for key in np.unique(keys):
        chosen = np.flatnonzero(keys == key)
        if len(chosen) < 2:
            continue
        out, true = mapped[chosen], truth[chosen]
        out_diff = (out[:, None] - out[None]).abs().mean()
        true_diff = (true[:, None] - true[None]).abs().mean()
        ratios.append(float(out_diff / true_diff.clamp(min=1e-6)))
    return float(np.mean(ratios))


# --------------------------------------------------------------------------------------------------------------------
# diagnose
# --------------------------------------------------------------------------------------------------------------------


def loss_pulls(
    model, sets: dict[str, np.ndarray], count: int, weights: dict[str, float] | None = None, frozen: bool = False
) -> dict[str, float]:
    """‖∂(λ·L)/∂picture‖ per loss term at the trained weights, for the terms that need no discriminator (paired L1,
    the cycle, the re-encoded latent, the mapper's own style head; with `frozen`, also the frozen style critic and
    the perceptual loss on the frozen expression encoder, and the params critic's reading where it was trained): the
    shipped run's discriminator was not kept, and a fresh
    one would measure nothing. `weights`: the λ of each term (LAMBDA unless given)."""
    from training.train_style_mapper import LAMBDA, latent_reconstruction, perceptual_loss

    weights = {**LAMBDA, **(weights or {})}

    rows, source, target = all_pairs(count)
    src, truth = pictures(sets, rows, source), pictures(sets, rows, target)
    t, s = torch.from_numpy(target), torch.from_numpy(source)
    one_hot = lambda x: F.one_hot(x, len(STYLES)).float()  # noqa: E731
    model.eval()
    with torch.no_grad():
        encoding = model.encode(src)
        heads = model.heads(encoding)
        applied = model.applied_params(
            heads["source_params"], one_hot(t), torch.zeros(len(t), 4), torch.zeros(len(t), 4)
        )
        fake = model.decode(encoding, one_hot(t), applied)
    fake = fake.detach().requires_grad_(True)
    re_encoding = model.encode(fake)
    re_heads = model.heads(re_encoding)
    back = model.applied_params(re_heads["source_params"], one_hot(s), torch.zeros(len(t), 4), torch.zeros(len(t), 4))
    terms = {
        "rec": F.l1_loss(fake, truth),
        "cyc": F.l1_loss(model.decode(re_encoding, one_hot(s), back), src),
        "latent": latent_reconstruction(re_encoding, encoding, edited=torch.zeros(len(t), dtype=torch.bool)),
        "self_style": F.cross_entropy(re_heads["source_style_logits"], t),
    }
    if frozen:
        from training.checkpoints import load_checkpoint
        from training.networks.style_judge import load_style_judge

        terms["critic"] = F.cross_entropy(load_style_judge(CRITIC)(fake), t)
        terms["percept"] = perceptual_loss(load_checkpoint(ENCODER), fake, truth)
        if PARAMS_CRITIC.is_file():
            true_params = torch.from_numpy(np.asarray(sets["params"])[rows, target]).float()
            terms["params"] = F.l1_loss(load_style_judge(PARAMS_CRITIC)(fake), true_params)
    pulls = {}
    for name, value in terms.items():
        (grad,) = torch.autograd.grad(weights[name] * value, fake, retain_graph=True)
        # every term is a batch mean, so one picture's own loss has B × this gradient: RMS over pictures
        pulls[name] = float(grad.norm() * len(t) ** 0.5)
    return pulls


def diagnose(weights: Path, sets: dict[str, np.ndarray], judges: Judges, count: int) -> dict:
    from training.train_style_mapper import load_generator, psnr

    model = load_generator(weights)
    rows, source, target = all_pairs(count)
    truth = pictures(sets, rows, target)
    with_skip = map_pairs(model, sets, rows, source, target)
    original = model.encode

    def encode_without_skip(images):
        encoding = original(images)
        encoding.skip = torch.zeros_like(encoding.skip)
        return encoding

    model.encode = encode_without_skip
    without_skip = map_pairs(model, sets, rows, source, target)
    model.encode = original
    read_with, read_without = judges.read(with_skip), judges.read(without_skip)
    diagnosis = {
        "weights": str(weights.relative_to(PROJECT_ROOT) if weights.is_absolute() else weights),
        "pairs": len(rows),
        "psnr_with_skip": float(psnr(with_skip, truth).mean()),
        "psnr_skip_zeroed": float(psnr(without_skip, truth).mean()),
        "pixel_change_skip_zeroed": float((with_skip - without_skip).abs().mean() * 255),  # of 255
        "style1_with_skip": float((read_with["style"] == target).mean()),
        "style1_skip_zeroed": float((read_without["style"] == target).mean()),
        "target_spread": target_spread(with_skip, truth, rows, source),
        "loss_pulls": loss_pulls(model, sets, min(count, 24)),
    }
    if "style2" in read_with:
        diagnosis["style2_with_skip"] = float((read_with["style2"] == target).mean())
        diagnosis["style2_skip_zeroed"] = float((read_without["style2"] == target).mean())
    return diagnosis


# --------------------------------------------------------------------------------------------------------------------
# train and report
# --------------------------------------------------------------------------------------------------------------------


def with_stage1_config(extra: list[str]) -> list[str]:
    """The variant's arguments on stage 1's design (the Conv1 skip straight in), whatever the registered config is
    now: `--config skip=full` plus the variant's own fields (argparse keeps only the last --config)."""
    fields = []
    if "--config" in extra:
        start = extra.index("--config") + 1
        stop = next((i for i in range(start, len(extra)) if extra[i].startswith("--")), len(extra))
        fields, extra = extra[start:stop], extra[: start - 1] + extra[stop:]
    if not any(f.startswith("skip=") for f in fields):
        fields = ["skip=full", *fields]
    if not any(f.startswith("params_edit=") for f in fields):  # stage 1 had no override edit either
        fields = [*fields, "params_edit=false"]
    return [*extra, "--config", *fields]


def ensure_critics(args: argparse.Namespace) -> None:
    """The two critics the ablations use, trained here when missing (training/style_judge.py)."""
    for path, architecture in ((CRITIC, "critic"), (TWIN_CRITIC, "judge")):
        if not path.is_file():
            subprocess.check_call(
                [sys.executable, "-m", "training.style_judge", "--role", "critic", "--architecture", architecture,
                 "--train-data", str(args.data / "train"), "--out", str(path)]
            )  # fmt: skip


def train_all(args: argparse.Namespace) -> int:
    ensure_critics(args)
    failed = []
    for name in args.only or list(ABLATIONS):
        extra = with_stage1_config(ABLATIONS[name][1])
        out = args.runs / name
        out.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "training.train_style_mapper", "--model", "style_mapper",
            "--train", str(args.data / "train"), "--val", str(args.data / "val"), "--out", str(out),
            "--init", str(args.init), "--cpu-bf16", "--batch", str(args.batch),
            "--time-budget-s", str(args.time_budget_s), "--eval-every-s", str(args.time_budget_s / 2),
            "--val-pairs", "128", *extra,
        ]  # fmt: skip
        started = time.perf_counter()
        with (out / "train.log").open("w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        print(f"[ablations] {name}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    return 1 if failed else 0


def report(args: argparse.Namespace) -> int:
    from training.train_style_mapper import load_generator

    judges = Judges()
    sets = validation_sets(args.data / "val", args.val_sets)
    started = time.perf_counter()
    diagnosis = diagnose(args.init, sets, judges, args.val_sets)
    print(f"[ablations] diagnosis: {json.dumps(diagnosis, indent=1)}", flush=True)
    rows = {}
    for name, (what, _) in ABLATIONS.items():
        weights = args.runs / name / "final.pt"
        weights = weights if weights.is_file() else args.runs / name / "best.pt"
        if not weights.is_file():
            continue
        summary = json.loads((args.runs / name / "summary.json").read_text())
        rows[name] = {
            "what it tests": what,
            "steps": summary["steps"],
            **measure(load_generator(weights), sets, judges, args.val_sets),
        }
        print(f"[ablations] {name}: {rows[name]}", flush=True)
    rows["stage 1 (start)"] = {
        "what it tests": "the starting point of every run: the mapper shipped before issue 15",
        "steps": 0,
        **measure(load_generator(args.init), sets, judges, args.val_sets),
    }
    # the shipped recipe's stage 2 (training/style_mapper_suite.py): both of its checkpoints, the choice between
    # them made here on validation characters
    stage2 = args.init.parent.parent / "style_mapper-stage2"
    for name, what in (("best.pt", "best validation PSNR"), ("final.pt", "last average")):
        if (stage2 / name).is_file():
            checkpoint = load_generator(stage2 / name)
            step = torch.load(stage2 / name, map_location="cpu", weights_only=True).get("step", "?")
            rows[f"stage 2, {name}"] = {
                "what it tests": f"shipped recipe (gated skip, no cycle or own style head, latent ×¼, critic): {what}",
                "steps": step,
                **measure(checkpoint, sets, judges, args.val_sets),
            }
    elapsed = time.perf_counter() - started
    write_section(args, SECTION, ablation_section(args, diagnosis, rows, elapsed))
    return 0


def write_section(args: argparse.Namespace, section: str, body: str) -> None:
    """`body` into its section of docs/results-mapping.md, or printed with --no-doc."""
    if args.no_doc:
        print(body)
        return
    from benchmarks.doc_markers import replace_section

    DOC.write_text(replace_section(DOC.read_text(), section, body))
    print(f"[ablations] wrote the {section} section of {DOC}", flush=True)


# Validation targets (issue 15's, on validation characters) and the rules that pick the shipped checkpoint. Stage 3's
# rule, fixed before stage 3 was measured: the stage-3 checkpoint (best.pt: best validation PSNR; final.pt: the last
# average) that meets the most of them ships, ties going to the higher expression preservation; stage 2's best.pt
# stays shipped unless a stage-3 checkpoint meets more than it does. It chose stage 3's best.pt (this page at
# commit d1464cc). Stage 4 exists for one target, the override, which no mapper can meet under judge 1 alone (its
# own reading error on the true edited drawings is 0.22, the target 0.15), so "meets more targets" would never ship
# it; its rule, fixed before stage 4 was measured, asks for what it is for without losing anything else.
STAGE_TARGETS = {
    "expression preserved": (">=", 0.90),
    "style (judge 1)": (">=", 0.85),
    "style (judge 2)": (">=", 0.85),
    "override MAE": ("<=", 0.15),
    "PSNR − copy": (">", 0.0),
}
# The least fall of validation override MAE that counts. For scale: stage 3's validation override MAE has a standard
# error of 0.026 over its 40 sets (the sets are the independent units: a set's four faces share one request); two
# checkpoints are read on the same faces, so their difference is known more tightly than that.
OVERRIDE_GAIN = 0.02
STAGE_RULE = (
    "a stage-4 checkpoint ships only if it meets every validation target the stage-3 checkpoint meets and lowers "
    f"the override MAE by at least {OVERRIDE_GAIN:g}; of those that do, the one with the lowest override MAE "
    "(ties: higher expression preservation); otherwise stage 3's stays"
)


def targets_met(row: dict[str, float]) -> int:
    return len(met_targets(row))


def met_targets(row: dict[str, float]) -> set[str]:
    checks = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b}
    return {name for name, (op, bound) in STAGE_TARGETS.items() if name in row and checks[op](row[name], bound)}


def shipped_stage(rows: dict[str, dict[str, float]]) -> str:
    """STAGE_RULE applied to rows named "stage 3, ..." (the start) and "stage 4, ..." (the candidates)."""
    start = next((n for n in rows if n.startswith("stage 3")), None)
    candidates = [n for n in rows if n.startswith("stage 4")]
    if start is not None:
        candidates = [
            n
            for n in candidates
            if met_targets(rows[start]) <= met_targets(rows[n])
            and rows[n]["override MAE"] <= rows[start]["override MAE"] - OVERRIDE_GAIN
        ]
    if not candidates:
        return start if start is not None else next(iter(rows))
    return min(candidates, key=lambda n: (rows[n]["override MAE"], -rows[n]["expression preserved"]))


@torch.no_grad()
def override_error(model, sets: dict[str, np.ndarray], judges: Judges, count: int) -> dict[str, float]:
    """Each set's four renderings mapped into its edited rendering's style with the edited parameters requested:
    MAE between the request and judge 1's reading, over the requested parameters, with and without the override."""
    from training.train_style_mapper import map_images

    rows = np.repeat(np.arange(count), len(STYLES))
    source = np.tile(np.arange(len(STYLES)), count)
    target = torch.from_numpy(np.asarray(sets["edited_style"])[rows])
    requested = torch.from_numpy(np.asarray(sets["params"])[rows, EDITED]).float()
    mask = torch.from_numpy(np.asarray(sets["edited_mask"])[rows]).float()
    errors = {}
    for name, used_mask in (("override MAE", mask), ("MAE without override", torch.zeros_like(mask))):
        read = []
        for start in range(0, len(rows), 48):
            part = slice(start, start + 48)
            mapped = map_images(
                model, pictures(sets, rows[part], source[part]), target[part], requested[part], used_mask[part]
            )
            read.append(torch.from_numpy(judges.read(mapped)["params"]))
        difference = (torch.cat(read) - requested).abs() * mask
        errors[name] = float(difference.sum() / mask.sum())
    return errors


def stages(args: argparse.Namespace) -> int:
    """Stage 3's shipped checkpoint and both of stage 4's, on validation characters; which one ships."""
    from training.train_style_mapper import load_generator

    judges = Judges()
    sets = validation_sets(args.data / "val", args.val_sets)
    started = time.perf_counter()
    start_name = "stage 3, best.pt (start of stage 4)"
    candidates = {
        start_name: args.mapping_runs / "style_mapper-stage3" / "best.pt",
        "stage 4, best.pt (best validation PSNR)": args.mapping_runs / "style_mapper" / "best.pt",
        "stage 4, final.pt (last average)": args.mapping_runs / "style_mapper" / "final.pt",
    }
    rows, paths = {}, {}
    for name, path in candidates.items():
        if not path.is_file():
            print(f"[stages] {name}: {path} is missing", flush=True)
            continue
        model = load_generator(path)
        step = torch.load(path, map_location="cpu", weights_only=True).get("step", "?")
        rows[name] = {"steps": step, **measure(model, sets, judges, args.val_sets)}
        rows[name].update(override_error(model, sets, judges, args.val_sets))
        rows[name]["targets met"] = targets_met(rows[name])
        paths[name] = path
        print(f"[stages] {name}: {rows[name]}", flush=True)
    if not rows:
        raise SystemExit(f"no stage checkpoints under {args.mapping_runs}")
    # how hard each stage-4 loss term pulls on the picture at stage 4's starting point: what its weights rest on
    from training.style_mapper_suite import STAGE4_WEIGHTS
    from training.train_style_mapper import LAMBDA, parse_overrides

    stage4_weights = {**LAMBDA, **parse_overrides(STAGE4_WEIGHTS, LAMBDA, "--weight")}
    start_path = candidates[start_name]
    pulls = (
        loss_pulls(load_generator(start_path), sets, min(args.val_sets, 16), stage4_weights, frozen=True)
        if start_path.is_file()
        else {}
    )
    print(f"[stages] pulls at stage 4's start: {pulls}", flush=True)
    chosen = shipped_stage(rows)
    import pandas as pd

    frame = pd.DataFrame.from_dict(rows, orient="index").round(3)
    frame.index.name = "checkpoint"
    targets = ", ".join(f"{n} {op} {b:g}" for n, (op, b) in STAGE_TARGETS.items())
    body = "\n".join(
        [
            "## Stage 4: which checkpoint ships (issue 15)",
            "",
            f"Reproduce: `python -m training.mapping_ablations stages` ({(time.perf_counter() - started) / 60:.1f} "
            f"min on a shared 2-core CPU machine). Validation pairs as in the ablations below (sets "
            f'0–{args.val_sets - 1} of split "val", all 12 ordered style pairs; for the override columns each set\'s '
            "four renderings mapped into its edited rendering's style with the edited parameters requested, MAE "
            "between request and judge 1's reading over the requested parameters). Judge 1 is stages 3 and 4's "
            "perceptual loss, so its columns are not an outside view of them; judge 2 and PSNR are. Stage 4's "
            "override loss reads the mapped face with the params critic, not with judge 1.",
            "",
            markdown_table(frame),
            "",
            "Pull of each weighted loss term on the mapped picture at stage 4's start (RMS over pictures of the "
            "gradient norm of λ·loss with respect to the picture, stage 4's λ: "
            + ", ".join(f"{k}={v:g}" for k, v in stage4_weights.items() if k in pulls)
            + "): "
            + ", ".join(f"{name} {value:.3g}" for name, value in pulls.items())
            + ". Terms that need the discriminator (adv, style, expr) are not measured: it was not kept.",
            "",
            f"Validation targets: {targets}. Rule (fixed before stage 4 was measured): {STAGE_RULE}. "
            f"**Shipped: {chosen}** ({paths[chosen]}).",
        ]
    )
    write_section(args, STAGES_SECTION_NAME, body)
    if not args.no_doc:  # --no-doc only looks: the choice `make mapper` copies is left as it was
        choice = args.mapping_runs / "shipped-checkpoint.txt"
        choice.write_text(str(paths[chosen]) + "\n")
        print(f"[stages] shipped: {paths[chosen]} (named in {choice})", flush=True)
    return 0


def ablation_section(args, diagnosis: dict, rows: dict, elapsed: float) -> str:
    import pandas as pd

    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "run"
    d = diagnosis
    budget = args.time_budget_s
    return "\n".join(
        [
            "## Why it recoloured: diagnostics and ablations (issue 15)",
            "",
            f"Reproduce: `python -m training.mapping_ablations train --time-budget-s {budget:.0f}` then "
            f"`python -m training.mapping_ablations report` ({elapsed / 60:.1f} min for the report on a shared 2-core "
            f"CPU machine). Measured on validation pairs: all 12 ordered style pairs of sets 0–{args.val_sets - 1} of "
            'split "val" (characters c01200–c01299, never trained on), in torch; judge 1 = the shipped '
            "expression_encoder's style head, judge 2 = the separately trained style judge (training/style_judge.py).",
            "",
            f"**Diagnosis of {d['weights']}** ({d['pairs']} pairs):",
            "",
            f"- Zeroing Conv1's skip at inference moves the output by {d['pixel_change_skip_zeroed']:.1f} of 255 per "
            f"pixel on average; PSNR {d['psnr_with_skip']:.2f} → {d['psnr_skip_zeroed']:.2f} dB; style conformity "
            f"by judge 1 {d['style1_with_skip']:.3f} → {d['style1_skip_zeroed']:.3f}"
            + (
                f", by judge 2 {d['style2_with_skip']:.3f} → {d['style2_skip_zeroed']:.3f}."
                if "style2_with_skip" in d
                else "."
            ),
            f"- Target spread {d['target_spread']:.2f}: the outputs one source gets for different target styles "
            f"differ {d['target_spread']:.0%} as much (mean absolute pixel difference) as the true drawings do.",
            "- Pull of each weighted loss term on the mapped picture (RMS over pictures of the gradient norm of "
            "λ·loss with respect to the picture, at the trained weights): "
            + ", ".join(f"{name} {value:.3g}" for name, value in d["loss_pulls"].items())
            + ".",
            "",
            f"**Ablations**: every run starts from {d['weights']} and trains for {budget:.0f} s of wall clock "
            "(CPU, bf16 autocast, batch "
            f"{args.batch}), one after another on the same machine, so their rows differ only by the change named.",
            "",
            markdown_table(frame.round(3)),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("diagnose", "train", "report", "stages"))
    parser.add_argument("--data", type=Path, default=Path("data/style_pairs"))
    parser.add_argument("--runs", type=Path, default=Path("runs/mapping-ablations"))
    parser.add_argument("--mapping-runs", type=Path, default=Path("runs/mapping"), help="the suite's runs (stages)")
    parser.add_argument("--init", type=Path, default=STAGE1)
    parser.add_argument("--time-budget-s", type=float, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--val-sets", type=int, default=40)
    parser.add_argument("--only", nargs="*", choices=sorted(ABLATIONS))
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "train":
        return train_all(args)
    if args.action == "report":
        return report(args)
    if args.action == "stages":
        return stages(args)
    judges = Judges()
    sets = validation_sets(args.data / "val", args.val_sets)
    print(json.dumps(diagnose(args.init, sets, judges, args.val_sets), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
