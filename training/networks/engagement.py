"""engagement: per-character expression features over time → clip engagement scores, curve and key moments.

After seed 000 §3.1 and §3.3, for up to MAX_CHARACTERS characters × MAX_STEPS model steps
(facecast/engagement_features.py):

  per-step features (expression encoder outputs + face box) → linear projection
  → BiLSTM temporal stream per character (the "temporal" stream: how each character's expression evolves)
  → cross-attention between the characters of the scene at each step (who reacts to whom)
  → pooled over characters → transformer encoder over time (sinusoidal positions, key-padding mask: any length)
  → heads: a per-step curve (a light temporal convolution keeps it smooth), attention pooling over steps whose
    weights are the key moments, and from the pooled clip vector engagement, resonance, shareability, appeal per
    audience group and the low/medium/high class logits.

`interval_logit_halfwidth` is a buffer, not a learned output: split-conformal half-widths at 90 % coverage, in logit
space (facecast.engagement_features.logit_interval), written by calibration (training/train_engagement.py) so the
served model carries its own uncertainty.

Ablations use the same code through two config fields (only the full configs are registered):
  fusion  — how the characters are combined: "attention" (cross-attention, then pooling: the full model), "hybrid"
            (per-character streams pooled without cross-attention), "early" (characters' raw features pooled before
            any stream), "late" (each character runs the whole model alone; their predictions are averaged);
  streams — "both" (BiLSTM + transformer), "temporal" (BiLSTM only, no transformer fusion), "visual" (per-step
            features only, no temporal modelling at all). For "visual" and "temporal" the characters are pooled as in
            "hybrid".

Masking never uses -inf: an all-masked row (a step with no face, an empty clip) would give NaN in torch and in ONNX
Runtime. Masked scores get a large negative offset instead and masked results are zeroed afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facecast.engagement_features import FRAME_FEATURE_DIM, INTERVAL_ORDER, MAX_CHARACTERS, MAX_STEPS
from facecast.vocab import AUDIENCE_GROUPS, ENGAGEMENT_CLASSES
from training.networks.registry import register_network

FUSIONS = ("attention", "hybrid", "early", "late")
STREAMS = ("both", "temporal", "visual")
SCALAR_OUTPUTS = ("engagement", "resonance", "shareability")
_MASKED_SCORE = -1.0e4  # softmax weight exp(-1e4) is exactly 0 in fp32, and an all-masked row stays finite


@dataclass(frozen=True)
class EngagementConfig:
    model_dim: int
    lstm_layers: int
    transformer_layers: int
    heads: int
    feedforward_dim: int
    dropout: float = 0.1
    curve_kernel: int = 5  # temporal conv before the curve head: ~1.25 s at 4 Hz
    fusion: str = "attention"
    streams: str = "both"
    triton_name: str = "engagement"

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.streams not in STREAMS:
            raise ValueError(f"streams must be one of {STREAMS}, got {self.streams!r}")
        if self.model_dim % self.heads or self.model_dim % 2:
            raise ValueError("model_dim must be even and divisible by heads")


# The CPU default: ~0.1 M parameters; trains in minutes on 2 cores and serves a 32-s window in about a millisecond.
CPU = EngagementConfig(model_dim=64, lstm_layers=1, transformer_layers=2, heads=4, feedforward_dim=128)
# Seed-sized for the GPU flavour: wider, deeper streams and fusion.
GPU = EngagementConfig(model_dim=256, lstm_layers=2, transformer_layers=4, heads=8, feedforward_dim=1024)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over `dim` where mask is 1; exactly 0 at masked entries, all zeros if the whole row is masked."""
    weights = torch.softmax(scores + (1.0 - mask) * _MASKED_SCORE, dim=dim) * mask
    return weights / weights.sum(dim=dim, keepdim=True).clamp_min(1e-12)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of `values` [..., L, D] over dim L where mask [..., L] is 1 (zeros where nothing is unmasked)."""
    weights = mask.unsqueeze(-1)
    return (values * weights).sum(dim) / weights.sum(dim).clamp_min(1.0)


def masked_max(values: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    weights = mask.unsqueeze(-1)
    return (values * weights + (1.0 - weights) * _MASKED_SCORE).amax(dim) * (weights.amax(dim) > 0).to(values.dtype)


STUDIO_STATISTICS = 3 * FRAME_FEATURE_DIM + 2
STUDIO_OUTPUTS = len(SCALAR_OUTPUTS) + len(AUDIENCE_GROUPS)


def pooled_statistics(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A window's input features pooled over every (character, step) cell with a face: mean, standard deviation and
    max of each frame feature, then the the share of the window's steps with a face and, of those, with two or more
    [B, STUDIO_STATISTICS]. What a studio's calibration regresses on (StudioLayer)."""
    cells = mask.flatten(1)  # [B, C·T]
    flat = features.flatten(1, 2)  # [B, C·T, F]
    mean = masked_mean(flat, cells, 1)
    spread = masked_mean((flat - mean.unsqueeze(1)) ** 2, cells, 1).clamp_min(0.0).sqrt()
    largest = masked_max(flat, cells, 1)
    faces_per_step = mask.sum(1)  # [B, T]
    with_faces = (faces_per_step > 0).to(features.dtype).sum(1)
    # over the model's whole window, not T: training batches are cut to their longest clip, serving pads to MAX_STEPS
    on_screen = (with_faces / MAX_STEPS).unsqueeze(1)
    together = ((faces_per_step > 1).to(features.dtype).sum(1) / with_faces.clamp_min(1.0)).unsqueeze(1)
    return torch.cat([mean, spread, largest, on_screen, together], dim=1)


class StudioLayer(nn.Module):
    """A studio's calibration of the clip-level outputs (training/studio_engagement.py), off in the shipped model.

    When `enabled`, each clip logit (engagement, resonance, shareability, appeal per group) is re-predicted as a
    ridge regression on the window's pooled input statistics and the shipped model's own logit for that output, and
    the low / medium / high class comes from the calibrated engagement logit against the studio's own tertiles
    (an ordinal logistic with `class_slope`). A linear layer fitted in closed form, not a fine-tuned network:
    with the tens of clips a studio has, it measured better on held-out clips (docs/results-engagement.md), and its
    ridge penalty shrinks it toward the shipped model's answer when the data say little. All buffers, so a
    checkpoint from before this layer loads with it off (training/checkpoints.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("enabled", torch.zeros(()))
        self.register_buffer("weight", torch.zeros(STUDIO_OUTPUTS, STUDIO_STATISTICS))
        self.register_buffer("base_weight", torch.ones(STUDIO_OUTPUTS))
        self.register_buffer("bias", torch.zeros(STUDIO_OUTPUTS))
        self.register_buffer("class_thresholds", torch.zeros(len(ENGAGEMENT_CLASSES) - 1))
        self.register_buffer("class_slope", torch.ones(()))

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor, class_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """logits [B, STUDIO_OUTPUTS] (scalars then appeal groups), class logits [B, classes] → the same, calibrated."""
        statistics = pooled_statistics(features, mask)
        calibrated = statistics @ self.weight.T + self.base_weight * logits + self.bias
        # P(class ≥ medium) = σ(a1), P(high) = σ(a2), a = slope · (engagement logit − threshold), a2 < a1; the class
        # log-probabilities in a form that stays exact far into the tails (log σ(x) = −softplus(−x)):
        # log P(low) = log σ(−a1), log P(high) = log σ(a2), log P(medium) = log σ(a1) + log σ(−a2) + log(1 − e^(a2−a1))
        a = self.class_slope * (calibrated[:, :1] - self.class_thresholds)
        a1, a2 = a[:, :1], a[:, 1:]
        gap = (a2 - a1).clamp_max(-1e-6)
        medium = -F.softplus(-a1) - F.softplus(a2) + torch.log(1.0 - torch.exp(gap))
        ordinal = torch.cat([-F.softplus(a1), medium, -F.softplus(-a2)], dim=1)
        on = self.enabled > 0.5
        return torch.where(on, calibrated, logits), torch.where(on, ordinal, class_logits)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class MaskedMultiHeadAttention(nn.Module):
    """Multi-head attention with a 0/1 key mask that stays finite when every key is masked (export-safe ops only)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query_key_value = nn.Linear(dim, 3 * dim)
        self.output = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x [N, L, D], key_mask [N, L] → [N, L, D]."""
        n, length, dim = x.shape
        head_dim = dim // self.heads
        qkv = self.query_key_value(x).reshape(n, length, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]  # [N, H, L, Dh]
        scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim))
        # no dropout on the weights themselves: on 2 cores it cost 15 % of a training step for no accuracy gain
        weights = masked_softmax(scores, key_mask[:, None, None, :])
        attended = torch.matmul(weights, value).transpose(1, 2).reshape(n, length, dim)
        return self.output(attended)


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: masked self-attention and a feed-forward layer, both residual."""

    def __init__(self, dim: int, heads: int, feedforward_dim: int, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = MaskedMultiHeadAttention(dim, heads)
        self.feedforward_norm = nn.LayerNorm(dim)
        self.feedforward = nn.Sequential(nn.Linear(dim, feedforward_dim), nn.GELU(), nn.Linear(feedforward_dim, dim))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), mask))
        x = x + self.dropout(self.feedforward(self.feedforward_norm(x)))
        return x * mask.unsqueeze(-1)


def calibrated_outputs(
    studio: StudioLayer, interval_logit_halfwidth: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, raw: dict
) -> dict[str, torch.Tensor]:
    """The served outputs from a network's (or an ensemble's averaged) raw logits: the studio layer, the logistic
    functions, and the calibrated half-widths."""
    batch = features.shape[0]
    clip = raw["clip_logits"]
    n_scalars, n_groups = len(SCALAR_OUTPUTS), len(AUDIENCE_GROUPS)
    outputs, class_logits = studio(
        features * mask.unsqueeze(-1), mask, clip[:, : n_scalars + n_groups], clip[:, n_scalars + n_groups :]
    )
    scalar_logits = outputs[:, :n_scalars]
    appeal_logits = outputs[:, n_scalars:]
    return {
        "engagement": torch.sigmoid(scalar_logits[:, 0:1]),
        "resonance": torch.sigmoid(scalar_logits[:, 1:2]),
        "shareability": torch.sigmoid(scalar_logits[:, 2:3]),
        "appeal": torch.sigmoid(appeal_logits),
        "class_logits": class_logits,
        "curve": torch.sigmoid(raw["curve_logits"]),
        "moment_weights": raw["moment_weights"],
        "interval_logit_halfwidth": interval_logit_halfwidth.unsqueeze(0).expand(batch, -1),
        # logits for the training losses (BCE with soft targets is better conditioned on logits)
        "scalar_logits": scalar_logits,
        "appeal_logits": appeal_logits,
        "curve_logits": raw["curve_logits"],
    }


class EngagementNetwork(nn.Module):
    OUTPUT_NAMES = (
        "engagement",
        "resonance",
        "shareability",
        "appeal",
        "class_logits",
        "curve",
        "moment_weights",
        "interval_logit_halfwidth",
    )

    def __init__(self, config: EngagementConfig):
        super().__init__()
        self.config = config
        dim = config.model_dim
        per_character = config.streams == "both" and config.fusion != "early"
        input_dim = FRAME_FEATURE_DIM * (1 if per_character or config.streams != "both" else 2)
        self.input_projection = nn.Sequential(nn.Linear(input_dim, dim), nn.GELU(), nn.LayerNorm(dim))
        if config.streams == "visual":
            # per-step modelling only: a position-wise MLP in place of the recurrent stream
            self.step_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        else:
            self.lstm = nn.LSTM(
                dim,
                dim // 2,
                num_layers=config.lstm_layers,
                batch_first=True,
                bidirectional=True,
                dropout=config.dropout if config.lstm_layers > 1 else 0.0,
            )
            self.lstm_norm = nn.LayerNorm(dim)
        if config.streams == "both" and config.fusion == "attention":
            # no dropout at the B·T·C scale: it cost ~10 % of a CPU training step; the time blocks regularise
            self.character_attention = AttentionBlock(dim, config.heads, config.feedforward_dim, 0.0)
        if config.fusion in ("attention", "hybrid") or config.streams != "both":
            self.character_pool = nn.Linear(2 * dim, dim)  # masked mean ⊕ masked max over characters
        if config.streams == "both":
            self.register_buffer("positions", sinusoidal_positions(MAX_STEPS, dim), persistent=False)
            self.temporal_fusion = nn.ModuleList(
                AttentionBlock(dim, config.heads, config.feedforward_dim, config.dropout)
                for _ in range(config.transformer_layers)
            )
            self.fusion_norm = nn.LayerNorm(dim)
        kernel = config.curve_kernel if config.streams != "visual" else 1
        self.curve_smoother = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.curve_head = nn.Linear(dim, 1)
        self.moment_score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))
        n_outputs = len(SCALAR_OUTPUTS) + len(AUDIENCE_GROUPS) + len(ENGAGEMENT_CLASSES)
        self.clip_head = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(dim, n_outputs)
        )
        # split-conformal half-widths in logit space (INTERVAL_ORDER), set by calibration; NaN-free zeros until then
        self.register_buffer("interval_logit_halfwidth", torch.zeros(len(INTERVAL_ORDER)))
        self.studio = StudioLayer()

    # -- stages -------------------------------------------------------------------------------------------------
    def _stream(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-sequence stream: x [N, T, F] → [N, T, D], zero at masked steps."""
        h = self.input_projection(x)
        if self.config.streams == "visual":
            h = self.step_mlp(h)
        else:
            h = self.lstm_norm(self.lstm(h * mask.unsqueeze(-1))[0] + h)
        return h * mask.unsqueeze(-1)

    def _pool_characters(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h [B, C, T, D], mask [B, C, T] → [B, T, D]."""
        pooled = torch.cat(
            [
                masked_mean(h.transpose(1, 2), mask.transpose(1, 2), 2),
                masked_max(h.transpose(1, 2), mask.transpose(1, 2), 2),
            ],
            dim=-1,
        )
        return self.character_pool(pooled)

    def _characters_to_steps(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, C, T, F], mask [B, C, T] → step sequences [N, T, D] with step masks [N, T]
        (N = B, or B·C for late fusion)."""
        batch, characters, steps, _ = features.shape
        config = self.config
        features = features * mask.unsqueeze(-1)  # a masked cell carries nothing, whatever its row holds
        step_mask = mask.amax(1)
        if config.streams == "both" and config.fusion == "early":
            raw = torch.cat(
                [
                    masked_mean(features.transpose(1, 2), mask.transpose(1, 2), 2),
                    masked_max(features.transpose(1, 2), mask.transpose(1, 2), 2),
                ],
                dim=-1,
            )
            return self._stream(raw, step_mask), step_mask
        flat_mask = mask.reshape(batch * characters, steps)
        h = self._stream(features.reshape(batch * characters, steps, -1), flat_mask)
        if config.streams == "both" and config.fusion == "late":
            return h, flat_mask
        h = h.reshape(batch, characters, steps, -1)
        if config.streams == "both" and config.fusion == "attention":
            # characters attend to each other at the same step: [B·T, C, D]
            per_step = h.transpose(1, 2).reshape(batch * steps, characters, -1)
            per_step_mask = mask.transpose(1, 2).reshape(batch * steps, characters)
            per_step = self.character_attention(per_step, per_step_mask)
            h = per_step.reshape(batch, steps, characters, -1).transpose(1, 2)
        return self._pool_characters(h, mask) * step_mask.unsqueeze(-1), step_mask

    def _heads(self, h: torch.Tensor, step_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Step sequences [N, T, D] → curve logits [N, T], moment weights [N, T], clip logits [N, K]."""
        if self.config.streams == "both":
            h = h + self.positions[: h.shape[1]].unsqueeze(0) * step_mask.unsqueeze(-1)
            for block in self.temporal_fusion:
                h = block(h, step_mask)
            h = self.fusion_norm(h)
        smoothed = self.curve_smoother(h.transpose(1, 2)).transpose(1, 2)
        curve_logits = self.curve_head(smoothed + h).squeeze(-1)
        moment_weights = masked_softmax(self.moment_score(h).squeeze(-1), step_mask)
        clip_vector = torch.cat([(moment_weights.unsqueeze(-1) * h).sum(1), masked_mean(h, step_mask, 1)], dim=-1)
        return {
            "curve_logits": curve_logits,
            "moment_weights": moment_weights,
            "clip_logits": self.clip_head(clip_vector),
        }

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """features float [B, C, T, F] (C ≤ MAX_CHARACTERS, T ≤ MAX_STEPS), mask float/bool [B, C, T]."""
        mask = mask.to(features.dtype)
        raw = self.raw_outputs(features, mask)
        return calibrated_outputs(self.studio, self.interval_logit_halfwidth, features, mask, raw)

    def raw_outputs(self, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Clip logits [B, K], curve logits [B, T] and moment weights [B, T] before the studio layer: what an
        ensemble averages (mask float [B, C, T])."""
        batch, characters, steps, _ = features.shape
        h, step_mask = self._characters_to_steps(features, mask)
        raw = self._heads(h, step_mask)
        if self.config.streams == "both" and self.config.fusion == "late":
            # decision-level fusion: average each present character's own predictions
            present = mask.amax(2)  # [B, C]
            share = present / present.sum(1, keepdim=True).clamp_min(1.0)
            raw = {
                name: (
                    value.reshape(batch, characters, *value.shape[1:])
                    * share.reshape(batch, characters, *([1] * (value.dim() - 1)))
                ).sum(1)
                for name, value in raw.items()
            }
            step_mask = mask.amax(1)
        raw["moment_weights"] = raw["moment_weights"] * step_mask
        return raw

    # -- registry contract --------------------------------------------------------------------------------------
    def serving_module(self) -> nn.Module:
        return EngagementServing(self)

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Random features in [0, 1] and a 0/1 mask with the first cell of every example set."""
        generator = torch.Generator().manual_seed(batch)
        features = torch.rand(batch, MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM, generator=generator)
        mask = (torch.rand(batch, MAX_CHARACTERS, MAX_STEPS, generator=generator) < 0.7).float()
        mask[:, 0, 0] = 1.0
        return features * mask.unsqueeze(-1), mask

    def serving_signature(self) -> dict:
        return {
            "inputs": [
                ("features", "FP32", [MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM]),
                ("mask", "FP32", [MAX_CHARACTERS, MAX_STEPS]),
            ],
            "outputs": [
                ("engagement", "FP32", [1]),
                ("resonance", "FP32", [1]),
                ("shareability", "FP32", [1]),
                ("appeal", "FP32", [len(AUDIENCE_GROUPS)]),
                ("class_logits", "FP32", [len(ENGAGEMENT_CLASSES)]),
                ("curve", "FP32", [MAX_STEPS]),
                ("moment_weights", "FP32", [MAX_STEPS]),
                ("interval_logit_halfwidth", "FP32", [len(INTERVAL_ORDER)]),
            ],
        }

    def serving_bounds(self) -> dict[str, tuple[float, float]]:
        """The mask says which (character, step) cells hold a face: 0 or 1, nothing else."""
        return {"mask": (0, 1)}


class EngagementServing(nn.Module):
    """What Triton serves: (features, mask) in, the signature's outputs in order."""

    def __init__(self, network: EngagementNetwork):
        super().__init__()
        self.network = network

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.network(features, mask)
        return tuple(outputs[name] for name in EngagementNetwork.OUTPUT_NAMES)


@dataclass(frozen=True)
class EngagementEnsembleConfig:
    """`members` engagement networks of one config, trained apart (different seeds and early-stopping clips) and
    served as one graph that averages their logits."""

    member: EngagementConfig
    members: int
    triton_name: str = "engagement"

    def __post_init__(self) -> None:
        if self.members < 2:
            raise ValueError("an ensemble needs at least 2 members")


class EngagementEnsemble(nn.Module):
    """Independently trained engagement networks averaged in logit space, with one studio layer and one set of
    conformal half-widths calibrated on the average (training/train_engagement.py, `--network engagement-x3-cpu`).

    Why: one training run of the CPU network lands anywhere in a wide spread of test accuracy (two runs of one
    recipe on the same rows, seed 0 both: 0.787 and 0.840, docs/results-engagement.md); averaging removes most of
    that run-to-run variance, and errors the members do not share cancel (the same page measures the ensemble
    against its members). Each
    member's own studio layer and half-widths stay at their defaults and unused. Class logits are averaged as
    log-probabilities, moment weights as weights (they still sum to 1 over the clip's steps)."""

    OUTPUT_NAMES = EngagementNetwork.OUTPUT_NAMES

    def __init__(self, config: EngagementEnsembleConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(EngagementNetwork(config.member) for _ in range(config.members))
        self.register_buffer("interval_logit_halfwidth", torch.zeros(len(INTERVAL_ORDER)))
        self.studio = StudioLayer()

    def raw_outputs(self, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        raws = [member.raw_outputs(features, mask) for member in self.members]
        n_regressions = len(SCALAR_OUTPUTS) + len(AUDIENCE_GROUPS)
        clip = torch.stack([raw["clip_logits"] for raw in raws]).mean(0)
        class_log_probs = torch.stack([F.log_softmax(raw["clip_logits"][:, n_regressions:], 1) for raw in raws])
        return {
            "clip_logits": torch.cat([clip[:, :n_regressions], class_log_probs.mean(0)], dim=1),
            "curve_logits": torch.stack([raw["curve_logits"] for raw in raws]).mean(0),
            "moment_weights": torch.stack([raw["moment_weights"] for raw in raws]).mean(0),
        }

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = mask.to(features.dtype)
        raw = self.raw_outputs(features, mask)
        return calibrated_outputs(self.studio, self.interval_logit_halfwidth, features, mask, raw)

    # the registry contract is the member network's: same inputs, outputs and bounds
    serving_module = EngagementNetwork.serving_module
    example_inputs = EngagementNetwork.example_inputs
    serving_signature = EngagementNetwork.serving_signature
    serving_bounds = EngagementNetwork.serving_bounds

    @classmethod
    def of(cls, members: list[EngagementNetwork]) -> EngagementEnsemble:
        """An ensemble holding copies of trained `members` (all of one config)."""
        config = EngagementEnsembleConfig(members[0].config, len(members), members[0].config.triton_name)
        ensemble = cls(config)
        for slot, member in zip(ensemble.members, members):
            slot.load_state_dict(member.state_dict())
        return ensemble.eval()


def build_engagement(config: EngagementConfig | EngagementEnsembleConfig) -> nn.Module:
    """Any config, registered or not (ablations: dataclasses.replace(CPU, fusion="late"))."""
    if isinstance(config, EngagementEnsembleConfig):
        return EngagementEnsemble(config)
    return EngagementNetwork(config)


register_network("engagement-cpu", CPU, build_engagement)
register_network("engagement-gpu", GPU, build_engagement)
# The shipped default: three CPU networks (each trains in ~8 min on one core; ~0.6 MB each)
register_network("engagement-x3-cpu", EngagementEnsembleConfig(CPU, 3), build_engagement)
