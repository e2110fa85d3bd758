"""Train the style mapper (seed 003 §3.2–3.3) or one of its baselines on exact cross-style pairs.

    python -m training.train_style_mapper --model style_mapper --train data/style_pairs/train \
        --val data/style_pairs/val --out runs/style_mapper-cpu [--exclude-style anime] [--time-budget-s 600]
    python -m training.train_style_mapper --model autoencoder ...   # plain autoencoder baseline
    python -m training.train_style_mapper --model cyclegan ...      # CycleGAN-style baseline (unpaired)

One step of the style mapper, for a batch of (source style s, target style t) pairs of the same face:
  fake  = G(source, t, params)             the mapping (with the edited rendering as target for some rows:
                                           a user's parameter override, whose ground truth we can draw)
  cycle = G(fake, s, the source's params)  back again
  L = λ_adv·L_adv + λ_style·L_style + λ_expr·L_expr + λ_cyc·L_cyc      (seed 003: 1.0 / 0.8 / 1.2 / 0.5)
      + λ_rec·L1(fake, ground truth) + encoder supervision + λ_kl·KL
where L_adv is LSGAN against a conditional PatchGAN discriminator (one patch map per style), L_style asks the
discriminator's style classifier and the mapper's own encoder for the target style, and L_expr asks the
discriminator's emotion classifier for the target's emotion and the re-encoded latent for the source's identity,
auxiliary and (where no parameter was overridden) expression parts (weighted as seed 003 Table 2; see
`latent_reconstruction`). The discriminator's classifiers learn from real renderings only (StarGAN). Stage 3 of the
shipped recipe (training/style_mapper_suite.py) adds `percept`: the frozen served expression_encoder, which
training/evaluate_mapping.py also judges with, reads the mapped picture as it reads the true rendering
(`perceptual_loss`); from then on the style judge trained apart (judge 2) and the distance to the true rendering are
the measurements the mapper never trained on. λ_rec = 10 is ours: the seed had no exact pairs; pix2pix-style paired
L1 is what exact pairs allow. Adam 2e-4, β (0.5, 0.999), weight decay 5e-5 (seed 003 §5.1); the learning rate
drops ×0.1 for the last 20 % of the time budget (the seed's ×0.1 every 50 of 200 epochs, compressed into a
budget). Generator weights are averaged (EMA 0.999) and the average is what is saved and evaluated.

Every loss weight can be set per run (`--weight cyc=0 critic=2`; `critic` needs `--style-critic`, a frozen style
classifier trained apart by training/style_judge.py; `percept` needs `--perceptual-encoder`; `params` needs
`--params-critic`, a frozen reader of the action parameters trained apart the same way) and so can the
network's config (`--config skip=gated`): the ablations of training/mapping_ablations.py use both, and so do stages
2 to 4 of the shipped recipe (training/style_mapper_suite.py, issue 15).

`--exclude-style X` leaves X out as source and as target (the leave-one-style-out models: they can still map *from*
an unseen style, never into one, as its style embedding is never trained). Runs on CUDA when present (bf16
autocast), else on the CPU (`--cpu-bf16` for bf16 there too).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES
from training.checkpoints import load_checkpoint, save_checkpoint
from training.data.style_pairs import EDITED, load_style_sets
from training.networks import build_model
from training.networks.registry import get_config
from training.networks.style_baselines import BASELINE_CPU, ConcatStyleGenerator
from training.networks.style_judge import load_style_judge
from training.networks.style_mapper import LATENT_WEIGHTS, StyleMapper, StyleMapperConfig

LAMBDA = {
    "adv": 1.0,
    "style": 0.8,  # the discriminator's style classifier on the mapped face
    "self_style": 0.8,  # the mapper's own encoder's style head on the mapped face
    "critic": 0.0,  # a frozen style classifier trained apart (--style-critic), off unless one is given
    "percept": 0.0,  # the frozen expression encoder's features, mapped vs true (--perceptual-encoder); off unless given
    "params": 0.0,  # a frozen params critic's reading of the mapped face vs the truth's parameters (--params-critic)
    "expr": 1.2,  # the discriminator's emotion classifier on the mapped face
    "latent": 1.2,  # the re-encoded latent against the source's (seed 003 Table 2 weights)
    "cyc": 0.5,
    "rec": 10.0,
    "encoder": 1.0,
    "kl": 0.01,
}
# CycleGAN's own weights for its baseline (cycle 10, identity 0.5 × cycle).
CYCLEGAN_LAMBDA = {"adv": 1.0, "style": 1.0, "cyc": 10.0, "identity": 5.0}
EDITED_FRACTION = 0.3  # rows whose target is the edited rendering (a parameter override)
NEW_LAYER_LR_SCALE = 5.0  # the override's edit fields (StyleMapperConfig.params_edit), see generator_groups
SAME_STYLE_FRACTION = 0.1  # rows mapped into their own style (the mapping must then be the identity)
MODELS = ("style_mapper", "autoencoder", "cyclegan")


class StyleDiscriminator(nn.Module):
    """Conditional PatchGAN (one real/fake map per style) with style and emotion classifiers on a shared trunk."""

    def __init__(self, channels: int = 64):
        super().__init__()
        sn = nn.utils.spectral_norm
        c = channels
        self.trunk = nn.Sequential(
            sn(nn.Conv2d(3, c, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(c, 2 * c, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * c, 4 * c, 4, 2, 1)),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(4 * c, 4 * c, 3, 1, 1)),
            nn.LeakyReLU(0.2),
        )
        self.patches = sn(nn.Conv2d(4 * c, len(STYLES), 3, 1, 1))
        self.classes = nn.Linear(4 * c, len(STYLES) + len(EMOTIONS))

    def forward(self, images: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ patch logits of `style` [B, h, w], style logits [B, 4], emotion logits [B, 7]."""
        features = self.trunk(images * 2 - 1)
        patches = self.patches(features)[torch.arange(len(style), device=style.device), style]
        classes = self.classes(features.mean(dim=(2, 3)))
        return patches, classes[:, : len(STYLES)], classes[:, len(STYLES) :]


@dataclass
class PairBatch:
    source: torch.Tensor  # float [B, 3, S, S] in [0, 1]
    target: torch.Tensor
    source_style: torch.Tensor  # int64 [B]
    target_style: torch.Tensor
    source_emotion: torch.Tensor
    target_emotion: torch.Tensor
    source_params: torch.Tensor  # float [B, 4] (ground truth, as drawn)
    target_params: torch.Tensor
    params_mask: torch.Tensor  # float [B, 4]: 1 where the target's parameter was set by an override

    def one_hot(self, styles: torch.Tensor) -> torch.Tensor:
        return F.one_hot(styles, len(STYLES)).float()


class PairSampler:
    """Random (source, target) pairs from style sets, optionally without one style, on the training device.

    The whole split is moved to the device as uint8 once (16k sets at 128 px: 3.9 GB), so batches are gathers."""

    def __init__(
        self,
        sets: dict[str, np.ndarray],
        device: torch.device,
        exclude_style: str | None = None,
        edited_fraction: float = EDITED_FRACTION,
        seed: int = 0,
    ):
        self.images = torch.from_numpy(np.ascontiguousarray(sets["images"])).to(device)
        self.emotions = torch.from_numpy(np.asarray(sets["emotions"])).to(device)
        self.params = torch.from_numpy(np.asarray(sets["params"])).to(device)
        self.edited_style = torch.from_numpy(np.asarray(sets["edited_style"])).to(device)
        self.edited_mask = torch.from_numpy(np.asarray(sets["edited_mask"])).to(device)
        self.allowed = torch.tensor([i for i, s in enumerate(STYLES) if s != exclude_style], device=device)
        self.edited_fraction = edited_fraction
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def _randint(self, high: int, n: int) -> torch.Tensor:
        return torch.randint(high, (n,), device=self.device, generator=self.generator)

    def sample(self, batch: int) -> PairBatch:
        sets = self._randint(len(self), batch)
        source = self.allowed[self._randint(len(self.allowed), batch)]
        target = self.allowed[self._randint(len(self.allowed), batch)]
        # mostly another style; SAME_STYLE_FRACTION keeps the identity mapping in the mix
        same = torch.rand(batch, device=self.device, generator=self.generator) < SAME_STYLE_FRACTION
        for _ in range(4):  # redraw the targets that collided with their source by chance
            clash = (target == source) & ~same
            if not clash.any():
                break
            target = torch.where(clash, self.allowed[self._randint(len(self.allowed), batch)], target)
        target = torch.where(same, source, target)
        edited_allowed = (self.edited_style[sets][:, None] == self.allowed[None]).any(dim=1)
        edited = torch.rand(batch, device=self.device, generator=self.generator) < self.edited_fraction
        edited &= edited_allowed
        target_row = torch.where(edited, torch.full_like(target, EDITED), target)
        target = torch.where(edited, self.edited_style[sets], target)
        mask = self.edited_mask[sets] * edited[:, None].float()

        def pixels(rows: torch.Tensor) -> torch.Tensor:
            return self.images[sets, rows].permute(0, 3, 1, 2).float() / 255.0

        return PairBatch(
            pixels(source),
            pixels(target_row),
            source,
            target,
            self.emotions[sets, source],
            self.emotions[sets, target_row],
            self.params[sets, source],
            self.params[sets, target_row],
            mask,
        )

    def fixed_pairs(self, count: int, seed: int = 1) -> list[tuple[int, int, int]]:
        """(set, source style, target style) with source ≠ target, no edits: a fixed validation list."""
        rng = np.random.default_rng(seed)
        allowed = self.allowed.tolist()
        pairs = []
        while len(pairs) < count:
            s, t = rng.choice(allowed, 2, replace=False)
            pairs.append((int(rng.integers(len(self))), int(s), int(t)))
        return pairs


def latent_reconstruction(re_encoding, encoding, edited: torch.Tensor) -> torch.Tensor:
    """L1 between the mapped face's re-encoded latent and the source's, part by part (seed 003 Table 2 weights).

    Identity and auxiliary always carry over. The expression part carries over only where no parameter was
    overridden: an overridden face *should* re-encode to another expression, and asking it not to (the first
    version of this loss did) taught the mapper to ignore overrides — measured: pushing a parameter across its
    whole range moved the judge's reading by < 0.01."""
    loss = sum(
        LATENT_WEIGHTS[part]
        * F.l1_loss(re_encoding.part(part, "mean").float(), encoding.part(part, "mean").detach().float())
        for part in ("identity", "auxiliary")
    )
    kept = (~edited).float()[:, None]
    difference = (
        re_encoding.part("expression", "mean").float() - encoding.part("expression", "mean").detach().float()
    ).abs() * kept
    return loss + LATENT_WEIGHTS["expression"] * difference.sum() / (kept.sum() * difference.shape[1]).clamp(min=1)


def perceptual_loss(encoder: nn.Module, mapped: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """How differently a frozen expression encoder reads the mapped picture and the true rendering (stage 3 of the
    shipped recipe, issue 15): the mean squared difference of its expression vectors (layer-normed: unit scale) plus
    that of its pooled features, each feature scaled by its variance over the batch's true renderings (the pooled
    features' scales differ from one channel to the next). Both pictures are first reduced to the encoder's input
    size by averaging (128 → 64 px: PIL's box filter, which is how the served encoder's inputs are made).

    Against the truth, not a label: the target's expression, style and (on override rows) edited parameters all come
    from the one drawing the mapper should have made."""
    size = encoder.config.image_size

    def reduced(pictures: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(pictures, size) if pictures.shape[-1] != size else pictures

    with torch.no_grad():
        true_pooled, true_expression, _ = encoder.embed(reduced(truth))
    pooled, expression, _ = encoder.embed(reduced(mapped))
    true_pooled, true_expression = true_pooled.float(), true_expression.float()
    variance = true_pooled.var(0, keepdim=True).clamp(min=1e-4)
    return F.mse_loss(expression.float(), true_expression) + ((pooled.float() - true_pooled) ** 2 / variance).mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, for float images in [0, 1]."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return 10 * torch.log10(1.0 / mse)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()


class MapperTrainer:
    """One optimisation step at a time for the style mapper or a baseline; `map` is what evaluation calls."""

    def __init__(
        self,
        kind: str,
        network: str,
        device: torch.device,
        learning_rate: float = 2e-4,
        cpu_bf16: bool = False,
        lambdas: dict[str, float] | None = None,
        config_overrides: dict[str, object] | None = None,
        style_critic: Path | None = None,
        perceptual_encoder: Path | None = None,
        params_critic: Path | None = None,
    ):
        self.kind, self.network, self.device = kind, network, device
        self.lambdas = {**LAMBDA, **(lambdas or {})}
        self.config_overrides = dict(config_overrides or {})
        self.generator = (
            build_style_mapper(network, self.config_overrides)
            if kind == "style_mapper"
            else ConcatStyleGenerator(BASELINE_CPU)
        )
        # frozen: its gradients only flow back into the mapped picture
        self.style_critic = load_style_judge(style_critic).to(device) if style_critic else None
        self.perceptual_encoder = load_checkpoint(perceptual_encoder).to(device) if perceptual_encoder else None
        self.params_critic = load_style_judge(params_critic).to(device) if params_critic else None
        if self.params_critic is not None and self.params_critic.config.task != "params":
            raise ValueError(f"{params_critic} is a style critic, not a params critic (--role params-critic)")
        for frozen in (self.style_critic, self.perceptual_encoder, self.params_critic):
            for p in frozen.parameters() if frozen is not None else ():
                p.requires_grad_(False)
        self.generator.to(device).train()
        self.ema = copy.deepcopy(self.generator).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        adam = dict(lr=learning_rate, betas=(0.5, 0.999), weight_decay=5e-5)
        self.g_optimizer = torch.optim.Adam(self.generator_groups(learning_rate), **adam)
        self.discriminator = StyleDiscriminator().to(device) if kind != "autoencoder" else None
        self.d_optimizer = (
            torch.optim.Adam(self.discriminator.parameters(), **adam) if self.discriminator is not None else None
        )
        self.updates = 0
        # bf16 on CUDA always; on the CPU when asked (AVX512_BF16 here: a step takes 1.6 s instead of 3.3 s)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cpu_bf16)

    def generator_groups(self, learning_rate: float) -> list[dict]:
        """The override's edit fields learn NEW_LAYER_LR_SCALE× faster than the rest: they start at zero in a stage
        that continues trained weights for a few hundred CPU steps, and the rate tuned for trained layers moves a
        fresh one slowly (a first try at that rate, with an offset of the expression latent in place of the fields,
        barely moved the picture in a throwaway 300-s probe). The scale was not ablated apart from the fields: the
        probe that chose them had both."""
        new = [p for name, p in self.generator.named_parameters() if name.startswith("params_edit_field.")]
        rest = [p for name, p in self.generator.named_parameters() if not name.startswith("params_edit_field.")]
        groups = [{"params": rest, "lr": learning_rate, "lr_scale": 1.0}]
        if new:
            groups.append({"params": new, "lr": learning_rate * NEW_LAYER_LR_SCALE, "lr_scale": NEW_LAYER_LR_SCALE})
        return groups

    def set_learning_rate(self, learning_rate: float) -> None:
        for optimizer in (self.g_optimizer, self.d_optimizer):
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate * group.get("lr_scale", 1.0)

    @torch.no_grad()
    def update_ema(self, decay: float = 0.999) -> None:
        # warm-up (as timm's ModelEmaV3): early on, the average follows the live weights closely
        self.updates += 1
        decay = min(decay, (1 + self.updates) / (10 + self.updates))
        for ema, live in zip(self.ema.state_dict().values(), self.generator.state_dict().values()):
            if ema.dtype.is_floating_point:
                ema.mul_(decay).add_(live.detach(), alpha=1 - decay)
            else:
                ema.copy_(live)

    def _discriminator_step(
        self,
        real: torch.Tensor,
        real_style: torch.Tensor,
        real_emotion: torch.Tensor,
        fake: torch.Tensor,
        fake_style: torch.Tensor,
    ) -> torch.Tensor:
        """LSGAN real/fake on the patch map of each image's style; the classifiers learn from real images only."""
        with self.autocast:
            real_patches, style_logits, emotion_logits = self.discriminator(real, real_style)
            fake_patches, _, _ = self.discriminator(fake.detach(), fake_style)
            loss = (
                F.mse_loss(real_patches.float(), torch.ones_like(real_patches, dtype=torch.float32))
                + F.mse_loss(fake_patches.float(), torch.zeros_like(fake_patches, dtype=torch.float32))
                + F.cross_entropy(style_logits.float(), real_style)
                + F.cross_entropy(emotion_logits.float(), real_emotion)
            )
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        return loss.detach()

    def _update_generator(self, loss: torch.Tensor) -> None:
        self.g_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.g_optimizer.step()
        self.update_ema()

    def step(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        """One generator (and discriminator) update; losses come back as device tensors (no host sync)."""
        if self.kind == "style_mapper":
            return self._mapper_step(batch)
        if self.kind == "autoencoder":
            return self._autoencoder_step(batch)
        return self._cyclegan_step(batch)

    def _mapper_step(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        g: StyleMapper = self.generator
        weights = self.lambdas
        target_style, source_style = batch.one_hot(batch.target_style), batch.one_hot(batch.source_style)
        with self.autocast:
            encoding = g.encode(batch.source)
            heads = g.heads(encoding)
            applied = g.applied_params(heads["source_params"], target_style, batch.target_params, batch.params_mask)
            fake = g.decode(encoding, target_style, applied)
        # with the discriminator's three terms weighted 0 (stage 3) it is neither trained nor asked: half a step saved
        adversarial = any(weights[name] for name in ("adv", "style", "expr"))
        d_loss = (
            self._discriminator_step(batch.target, batch.target_style, batch.target_emotion, fake, batch.target_style)
            if adversarial
            else torch.zeros((), device=self.device)
        )
        with self.autocast:
            re_encoding = g.encode(fake)
            re_heads = g.heads(re_encoding)
            losses = {
                "self_style": F.cross_entropy(re_heads["source_style_logits"].float(), batch.target_style),
                "latent": latent_reconstruction(re_encoding, encoding, edited=batch.params_mask.sum(1) > 0),
                "rec": F.l1_loss(fake.float(), batch.target),
                "encoder": F.cross_entropy(heads["source_style_logits"].float(), batch.source_style)
                + F.cross_entropy(heads["emotion_logits"].float(), batch.source_emotion)
                + F.l1_loss(heads["source_params"].float(), batch.source_params)
                + 0.1 * F.cross_entropy(heads["expression_style_logits"].float(), batch.source_style),
                "kl": kl_divergence(encoding.mean.float(), encoding.logvar.float()),
            }
            if adversarial:
                fake_patches, fake_style, fake_emotion = self.discriminator(fake, batch.target_style)
                losses["adv"] = F.mse_loss(fake_patches.float(), torch.ones_like(fake_patches, dtype=torch.float32))
                losses["style"] = F.cross_entropy(fake_style.float(), batch.target_style)
                losses["expr"] = F.cross_entropy(fake_emotion.float(), batch.target_emotion)
            if weights["cyc"]:  # the way back costs a whole decode: skipped when it does not count
                back = g.applied_params(re_heads["source_params"], source_style, batch.source_params, batch.params_mask)
                losses["cyc"] = F.l1_loss(g.decode(re_encoding, source_style, back).float(), batch.source)
            if self.style_critic is not None and weights["critic"]:
                losses["critic"] = F.cross_entropy(self.style_critic(fake).float(), batch.target_style)
            if self.perceptual_encoder is not None and weights["percept"]:
                losses["percept"] = perceptual_loss(self.perceptual_encoder, fake, batch.target)
            if self.params_critic is not None and weights["params"]:
                # every parameter as the true target drew it: overridden ones are what was asked for, the others
                # must carry over from the source (within the target style's bounds, as the painter clips them)
                losses["params"] = F.l1_loss(self.params_critic(fake).float(), batch.target_params)
            loss = sum(weights[name] * value for name, value in losses.items())
        self._update_generator(loss)
        return {"loss": loss.detach(), "d": d_loss, **{name: value.detach() for name, value in losses.items()}}

    def _autoencoder_step(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        with self.autocast:
            fake = self.generator(batch.source, batch.one_hot(batch.target_style))
            loss = F.l1_loss(fake.float(), batch.target)
        self._update_generator(loss)
        return {"loss": loss.detach(), "rec": loss.detach()}

    def _cyclegan_step(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        g = self.generator
        target_style, source_style = batch.one_hot(batch.target_style), batch.one_hot(batch.source_style)
        with self.autocast:
            fake = g(batch.source, target_style)
        # unpaired: the discriminator's real images are other faces' renderings (the batch rolled by one)
        d_loss = self._discriminator_step(
            batch.target.roll(1, 0),
            batch.target_style.roll(1, 0),
            batch.target_emotion.roll(1, 0),
            fake,
            batch.target_style,
        )
        with self.autocast:
            fake_patches, fake_style, _ = self.discriminator(fake, batch.target_style)
            losses = {
                "adv": F.mse_loss(fake_patches.float(), torch.ones_like(fake_patches, dtype=torch.float32)),
                "style": F.cross_entropy(fake_style.float(), batch.target_style),
                "cyc": F.l1_loss(g(fake, source_style).float(), batch.source),
                "identity": F.l1_loss(g(batch.source, source_style).float(), batch.source),
            }
            loss = sum(CYCLEGAN_LAMBDA[name] * value for name, value in losses.items())
        self._update_generator(loss)
        return {"loss": loss.detach(), "d": d_loss, **{name: value.detach() for name, value in losses.items()}}


@torch.no_grad()
def map_images(
    model: nn.Module,
    images: torch.Tensor,
    target_style: torch.Tensor,
    params: torch.Tensor | None = None,
    params_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """float [B, 3, S, S] → mapped float images, for the style mapper (mask 0: no overrides) or a baseline."""
    target = F.one_hot(target_style, len(STYLES)).float()
    if isinstance(model, StyleMapper):
        params = params if params is not None else torch.zeros(len(images), len(ACTION_PARAMS), device=images.device)
        params_mask = params_mask if params_mask is not None else torch.zeros_like(params)
        return model(images, target, params, params_mask)["mapped"]
    return model(images, target)


@torch.no_grad()
def validation_psnr(
    model: nn.Module, sampler: PairSampler, pairs: list[tuple[int, int, int]], batch: int = 64
) -> float:
    values = []
    for start in range(0, len(pairs), batch):
        chunk = torch.tensor(pairs[start : start + batch], device=sampler.device)
        sets, source, target = chunk[:, 0], chunk[:, 1], chunk[:, 2]
        src = sampler.images[sets, source].permute(0, 3, 1, 2).float() / 255
        tgt = sampler.images[sets, target].permute(0, 3, 1, 2).float() / 255
        values.append(psnr(map_images(model, src, target), tgt))
    return float(torch.cat(values).mean())


def build_style_mapper(network: str, config_overrides: dict[str, object] | None = None) -> StyleMapper:
    """A registered style mapper, or an experimental variant of it (the ablations of docs/results-mapping.md)."""
    if not config_overrides:
        return build_model(network)
    return StyleMapper(dataclasses.replace(get_config(network), **config_overrides))


def parse_overrides(pairs: list[str], known: dict[str, object], what: str) -> dict[str, object]:
    """["rec=3", "skip=none"] → {"rec": 3.0, "skip": "none"}, typed after `known`'s values; unknown keys refused."""
    parsed: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in known or not value:
            raise SystemExit(f"{what}: expected NAME=VALUE with NAME one of {', '.join(sorted(known))}, got {pair!r}")
        if isinstance(known[key], bool):  # bool("false") is True
            if value.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"{what}: {key} is true or false, got {value!r}")
            parsed[key] = value.lower() in ("true", "1")
        else:
            parsed[key] = type(known[key])(value) if not isinstance(known[key], str) else value
    return parsed


def save_generator(trainer: MapperTrainer, path: Path, **extra) -> Path:
    if trainer.kind == "style_mapper":
        # the whole config too: a checkpoint must load as what was trained even after the registered config changes
        extra["config"] = dataclasses.asdict(trainer.ema.config)
        if trainer.config_overrides:
            extra["config_overrides"] = trainer.config_overrides
        return save_checkpoint(trainer.ema, trainer.network, path, **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {name: value.detach().cpu() for name, value in trainer.ema.state_dict().items()}
    torch.save({"baseline": trainer.kind, "state_dict": state, **extra}, tmp)
    tmp.replace(path)
    return path


def load_generator(path: str | Path) -> nn.Module:
    """A trained style mapper (registered checkpoint) or baseline, in eval mode on the CPU."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "baseline" in checkpoint:
        model = ConcatStyleGenerator(BASELINE_CPU)
    else:
        config = checkpoint.get("config")
        # a checkpoint without its whole config was written before the override edit existed
        model = (
            StyleMapper(StyleMapperConfig(**config))
            if config
            else build_style_mapper(
                checkpoint["network"], {"params_edit": False, **(checkpoint.get("config_overrides") or {})}
            )
        )
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def train(args: argparse.Namespace) -> dict:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    train_sampler = PairSampler(
        load_style_sets(args.train, mmap=False),
        device,
        args.exclude_style,
        edited_fraction=args.edited_fraction,
        seed=args.seed,
    )
    val_sampler = PairSampler(load_style_sets(args.val, mmap=False), device, args.exclude_style, seed=args.seed + 1)
    val_pairs = val_sampler.fixed_pairs(args.val_pairs)
    trainer = MapperTrainer(
        args.model,
        args.network,
        device,
        args.learning_rate,
        cpu_bf16=args.cpu_bf16,
        lambdas=parse_overrides(args.weight, LAMBDA, "--weight"),
        config_overrides=parse_overrides(args.config, dataclasses.asdict(get_config(args.network)), "--config"),
        style_critic=args.style_critic,
        perceptual_encoder=args.perceptual_encoder,
        params_critic=args.params_critic,
    )
    if args.init:  # continue from a trained generator (its discriminator and optimiser state start afresh)
        initial = load_generator(args.init).state_dict()
        # a variant may add layers (a skip gate) or reshape some (a skip removed): those start fresh
        own = trainer.generator.state_dict()
        fitting = {k: v for k, v in initial.items() if k in own and own[k].shape == v.shape}
        trainer.generator.load_state_dict(fitting, strict=False)
        trainer.ema.load_state_dict(trainer.generator.state_dict())
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "log.jsonl").open("w")
    started = time.perf_counter()
    best, step, next_eval, history = -math.inf, 0, args.eval_every_s, []
    decayed = False
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= args.time_budget_s or (args.max_steps and step >= args.max_steps):
            break
        progress = max(elapsed / args.time_budget_s, step / args.max_steps if args.max_steps else 0.0)
        if not decayed and progress >= 0.8:
            trainer.set_learning_rate(args.learning_rate * 0.1)
            decayed = True
        losses = trainer.step(train_sampler.sample(args.batch))
        step += 1
        if elapsed >= next_eval or step == 1:
            next_eval = elapsed + args.eval_every_s
            losses = {name: float(value) for name, value in losses.items()}
            if not all(math.isfinite(v) for v in losses.values()):
                raise FloatingPointError(f"step {step}: non-finite loss {losses}")
            value = validation_psnr(trainer.ema, val_sampler, val_pairs)
            record = {
                "step": step,
                "elapsed_s": round(elapsed, 1),
                "val_psnr": round(value, 3),
                **{k: round(v, 5) for k, v in losses.items()},
            }
            history.append(record)
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(
                f"[{args.model}] step {step} {elapsed:.0f}s val PSNR {value:.2f} dB "
                + " ".join(f"{k} {v:.3f}" for k, v in losses.items()),
                flush=True,
            )
            if value > best:
                best = value
                save_generator(
                    trainer, args.out / "best.pt", step=step, val_psnr=value, exclude_style=args.exclude_style
                )
    final = validation_psnr(trainer.ema, val_sampler, val_pairs)
    # the last average too: validation PSNR rewards a safe, source-like picture, so "best" is not always the one
    # that redraws best (training/mapping_ablations.py measures both judges on final.pt)
    save_generator(trainer, args.out / "final.pt", step=step, val_psnr=final, exclude_style=args.exclude_style)
    if final > best:
        best = final
        save_generator(trainer, args.out / "best.pt", step=step, val_psnr=final, exclude_style=args.exclude_style)
    summary = {
        "model": args.model,
        "network": args.network,
        "device": str(device),
        "steps": step,
        "samples": step * args.batch,
        "batch": args.batch,
        "wall_s": round(time.perf_counter() - started, 1),
        "best_val_psnr": round(best, 3),
        "final_val_psnr": round(final, 3),
        "exclude_style": args.exclude_style,
        "train_sets": len(train_sampler),
        "init": str(args.init) if args.init else None,
        "edited_fraction": args.edited_fraction,
        "weights": trainer.lambdas if args.model == "style_mapper" else None,
        "config_overrides": trainer.config_overrides or None,
        "style_critic": str(args.style_critic) if args.style_critic else None,
        "perceptual_encoder": str(args.perceptual_encoder) if args.perceptual_encoder else None,
        "params_critic": str(args.params_critic) if args.params_critic else None,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"[{args.model}] done: {summary}", flush=True)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="style_mapper")
    parser.add_argument("--network", default="style_mapper-cpu", help="registered style_mapper config")
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--val", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--exclude-style", choices=STYLES)
    parser.add_argument("--init", type=Path, help="start from this generator checkpoint")
    parser.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU too")
    parser.add_argument("--weight", nargs="*", default=[], metavar="LOSS=W", help="loss weights other than LAMBDA's")
    parser.add_argument(
        "--config", nargs="*", default=[], metavar="FIELD=V", help="a variant of the registered network's config"
    )
    parser.add_argument("--style-critic", type=Path, help="a frozen style classifier (training/style_judge.py)")
    parser.add_argument(
        "--perceptual-encoder", type=Path, help="a frozen expression encoder checkpoint for the `percept` loss"
    )
    parser.add_argument(
        "--params-critic", type=Path, help="a frozen params critic (training/style_judge.py) for the `params` loss"
    )
    parser.add_argument("--edited-fraction", type=float, default=EDITED_FRACTION)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--time-budget-s", type=float, default=600)
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--eval-every-s", type=float, default=60)
    parser.add_argument("--val-pairs", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
