"""style_mapper: a face in one art style → the same character and expression in another style (seed 003 §3.2–3.3).

A VAE-GAN generator in two halves:

  encoder  Conv1 7×7/2 → Conv2 4×4/2 → ResBlock ×4 (instance norm)        → content features (S/4 × S/4)
           content → two strided convs → pooled → μ, log σ² of a 256-d latent split into
           identity 64 · expression 128 · style 48 · auxiliary 16 (seed 003 Table 2)
           heads: source style (from the style part), emotion and the four action parameters (from the
           expression part)
  decoder  AdaIN residual blocks (style injection) → multi-head self-attention → Upconv1 4×4/2 (+ the Conv1
           skip) → Upconv2 7×7 → tanh, every normalisation an AdaIN driven by one code:
           target-style embedding ⊕ identity ⊕ expression ⊕ auxiliary ⊕ the action parameters to draw

The source's style part of the latent is what the mapping throws away: the decoder never sees it and gets the target
style's embedding instead. Self-attention uses spatial reduction (keys and values average-pooled), so it stays
affordable at the seed's 64×64 feature maps.

Action parameters (mouth, eye, brow, cheek; facecast.vocab.ACTION_PARAMS) are part of the serving contract: the
network reads the source's from the image, a client may override any of them (`params` with `params_mask` = 1),
and the result is clamped to the target style's bounds (seed 003 Table 5) inside the graph, so every flavour
(ONNX Runtime, TensorRT) applies the same bounds. `target_style` is a weight per style (one-hot for one style;
weights in between blend the style embeddings and their bounds).

Deviations from Table 3, each for a reason: the upsampling layers use AdaIN rather than plain instance norm (plain
instance norm after the style injection would wash the injected statistics out again, as MUNIT observed), the
final 7×7 layer upsamples by nearest neighbour first (a 7×7 transposed conv at stride 2 leaves checkerboard
artefacts), and Conv1's features reach the decoder through a gated skip (the decoder computes a per-pixel gate from
its own features and the target code), so the background and the pose come through at full detail while the face,
which must be redrawn in the target style, need not copy the source's appearance (issue 15).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLE_PARAM_BOUNDS, STYLES
from training.networks.registry import register_network

# Seed 003 Table 2: the latent's parts, in this order, and how much each counts when a mapped image is re-encoded
# (the table's "reconstruction loss weight"; the style part is replaced on purpose, so it is checked by the
# target-style classifier instead).
LATENT_PARTS: tuple[tuple[str, int], ...] = (("identity", 64), ("expression", 128), ("style", 48), ("auxiliary", 16))
LATENT_WEIGHTS: dict[str, float] = {"identity": 0.35, "expression": 0.45, "style": 0.15, "auxiliary": 0.05}
LATENT_DIM = sum(size for _, size in LATENT_PARTS)


@dataclass(frozen=True)
class StyleMapperConfig:
    image_size: int  # S: input and output are S × S RGB
    conv1_channels: int  # Table 3: 64 at 256 px
    conv2_channels: int  # Table 3: 128 at 256 px
    encoder_res_blocks: int  # Table 3: ResBlock1-4
    decoder_res_blocks: int  # AdaIN residual blocks (the style injection)
    attention_heads: int
    attention_reduction: int  # keys / values are average-pooled by this factor per axis
    code_dim: int = 256  # width of the decoder's conditioning code
    # How Conv1's full-resolution features reach the decoder: "full" (concatenated as they are), "gated" (through
    # a per-pixel gate the decoder computes from its own features and the target code, so it can shut the source's
    # appearance out where the face must be redrawn and keep it for the shared background), or "none".
    skip: str = "full"
    upsample_channels: int = 0  # width of the decoder's upsampling path (0: conv1_channels, the encoder's width)
    # Whether an override edits the 32×32 content the decoder draws from: a learned field per action parameter,
    # computed from the content, added in proportion to (applied − read) (`edit` in StyleMapper.decode). Without it
    # an override reaches the decoder only through the global AdaIN code, beside a content map that still holds the
    # source's mouth and eyes, and the decoder drew the content: pushing mouth across its whole range changed 0.3 %
    # of the pixels (docs/results-mapping.md).
    params_edit: bool = False
    triton_name: str = "style_mapper"


# Table 3's six residual blocks at 64×64 are split two before the latent and four after it with AdaIN (the style
# injection). Measured with training/style_mapper_suite.py on an H100 (see the issue 6 note): four plain + two
# AdaIN blocks reached 13.90 dB validation PSNR in 430 s, two + four 14.15 dB in 480 s; a 1×1 conv over the target
# style as planes before the AdaIN blocks (StarGAN-style conditioning) changed nothing (13.95 dB at step 1082,
# against 13.94 at step 842 and 14.04 at step 1401 without it), so it is not in.
# The CPU default at 128 px: half the seed's widths, 1.96 GFLOP per image (torch FlopCounterMode; 1.58 without the
# override edit of issue 15's stage 4, which is a quarter more compute for the one way an override reaches the
# picture); serving cost on 2 cores in docs/benchmarks.md.
#
# Issue 15: Conv1's skip now passes through a gate (skip="gated"). With the skip straight in, the mapper recoloured
# the source instead of redrawing it: zeroing the skip at inference alone doubled the style conformity of the first
# shipped weights (training/mapping_ablations.py, docs/results-mapping.md); removing it outright cost PSNR and
# expression (the background and pose come through it), the gate keeps both.
CPU = StyleMapperConfig(
    image_size=128,
    conv1_channels=32,
    conv2_channels=64,
    encoder_res_blocks=2,
    decoder_res_blocks=4,
    attention_heads=4,
    attention_reduction=2,
    skip="gated",
    params_edit=True,
)
# Seed-sized (Table 3): 256 px, 64/128 channels, 23 GFLOP per image, for the TensorRT flavour.
GPU = StyleMapperConfig(
    image_size=256,
    conv1_channels=64,
    conv2_channels=128,
    encoder_res_blocks=2,
    decoder_res_blocks=4,
    attention_heads=8,
    attention_reduction=4,
    skip="gated",
    params_edit=True,
)


def _style_bounds() -> torch.Tensor:
    """[styles, params, 2] lower and upper bounds (seed 003 Table 5), in vocabulary order."""
    return torch.tensor(
        [[STYLE_PARAM_BOUNDS[style][param] for param in ACTION_PARAMS] for style in STYLES], dtype=torch.float32
    )


def style_weights(target_style: torch.Tensor) -> torch.Tensor:
    """Non-negative weights summing to 1 from whatever a client sends (one-hot stays one-hot)."""
    weights = target_style.clamp(min=0.0)
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-6)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return -grad


def conv_block(in_channels: int, out_channels: int, kernel: int, stride: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride,
            padding=(kernel - 1) // 2 if stride == 1 else (kernel - stride + 1) // 2,
        )
    ]
    if norm:
        layers.append(nn.InstanceNorm2d(out_channels))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """3×3 conv → IN → LeakyReLU → 3×3 conv → IN, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.InstanceNorm2d(channels),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AdaIN(nn.Module):
    """Instance norm whose scale and shift come from the conditioning code (the style injection)."""

    def __init__(self, channels: int, code_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels)
        self.to_scale_shift = nn.Linear(code_dim, 2 * channels)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        scale, shift = self.to_scale_shift(code)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + scale) + shift


class AdaINResBlock(nn.Module):
    def __init__(self, channels: int, code_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = AdaIN(channels, code_dim)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = AdaIN(channels, code_dim)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm1(self.conv1(x), code), 0.2)
        return x + self.norm2(self.conv2(h), code)


class SpatialSelfAttention(nn.Module):
    """Multi-head self-attention over feature-map positions (seed 003 §3.3), with keys and values pooled by
    `reduction` per axis. The residual starts at zero (SAGAN), so attention is learned in, not imposed."""

    def __init__(self, channels: int, heads: int, reduction: int):
        super().__init__()
        self.heads, self.reduction = heads, reduction
        self.norm = nn.GroupNorm(1, channels)
        self.to_q = nn.Conv2d(channels, channels, 1)
        self.to_kv = nn.Conv2d(channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        pooled = F.avg_pool2d(normed, self.reduction) if self.reduction > 1 else normed
        q = self.to_q(normed).reshape(b, self.heads, c // self.heads, h * w).transpose(2, 3)
        k, v = (t.reshape(b, self.heads, c // self.heads, -1) for t in self.to_kv(pooled).chunk(2, dim=1))
        attended = F.scaled_dot_product_attention(q, k.transpose(2, 3), v.transpose(2, 3))
        attended = attended.transpose(2, 3).reshape(b, c, h, w)
        return x + self.gamma * self.out(attended)


@dataclass
class Encoding:
    """What the encoder reads from a batch of faces."""

    content: torch.Tensor  # [B, C2, S/4, S/4]
    skip: torch.Tensor  # [B, C1, S/2, S/2] (Conv1's features)
    mean: torch.Tensor  # [B, LATENT_DIM]
    logvar: torch.Tensor  # [B, LATENT_DIM]
    latent: torch.Tensor  # sampled in training, the mean in eval

    def part(self, name: str, of: str = "latent") -> torch.Tensor:
        start = 0
        for part_name, size in LATENT_PARTS:
            if part_name == name:
                return getattr(self, of)[:, start : start + size]
            start += size
        raise KeyError(name)


class StyleMapper(nn.Module):
    OUTPUT_NAMES = ("mapped", "applied_params", "source_params", "source_style_logits", "emotion_logits")

    def __init__(self, config: StyleMapperConfig):
        super().__init__()
        self.config = config
        c1, c2, code = config.conv1_channels, config.conv2_channels, config.code_dim
        self.register_buffer("bounds", _style_bounds(), persistent=False)
        # encoder
        self.conv1 = conv_block(3, c1, 7, 2)
        self.conv2 = conv_block(c1, c2, 4, 2)
        self.res_blocks = nn.Sequential(*(ResBlock(c2) for _ in range(config.encoder_res_blocks)))
        self.to_latent = nn.Sequential(
            conv_block(c2, 2 * c2, 4, 2, norm=False),
            conv_block(2 * c2, 2 * c2, 4, 2, norm=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * c2, 2 * LATENT_DIM),
        )
        sizes = dict(LATENT_PARTS)
        self.source_style_head = nn.Linear(sizes["style"], len(STYLES))
        self.emotion_head = nn.Linear(sizes["expression"], len(EMOTIONS))
        self.params_head = nn.Linear(sizes["expression"], len(ACTION_PARAMS))
        # trained through gradient reversal: pushes style information out of the expression part
        self.expression_style_probe = nn.Linear(sizes["expression"], len(STYLES))
        # decoder conditioning: target style ⊕ identity ⊕ expression ⊕ auxiliary ⊕ embedded action parameters
        self.style_embedding = nn.Parameter(torch.randn(len(STYLES), sizes["style"]) * 0.5)
        self.params_embedding = nn.Sequential(nn.Linear(len(ACTION_PARAMS), 32), nn.LeakyReLU(0.2))
        if config.params_edit:
            self.params_edit_field = nn.Sequential(
                nn.Conv2d(c2, c2, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c2, len(ACTION_PARAMS) * c2, 3, padding=1)
            )
            # zero at first: a mapper continued from weights without it starts out drawing exactly as before
            nn.init.zeros_(self.params_edit_field[-1].weight)
            nn.init.zeros_(self.params_edit_field[-1].bias)
        code_in = sizes["style"] + sizes["identity"] + sizes["expression"] + sizes["auxiliary"] + 32
        self.to_code = nn.Sequential(
            nn.Linear(code_in, code), nn.LeakyReLU(0.2), nn.Linear(code, code), nn.LeakyReLU(0.2)
        )
        # decoder
        self.style_blocks = nn.ModuleList(AdaINResBlock(c2, code) for _ in range(config.decoder_res_blocks))
        self.attention = SpatialSelfAttention(c2, config.attention_heads, config.attention_reduction)
        if config.skip not in ("full", "gated", "none"):
            raise ValueError(f"skip must be full, gated or none, not {config.skip!r}")
        up = config.upsample_channels or c1
        self.upconv1 = nn.ConvTranspose2d(c2, up, 4, 2, 1)
        self.up1_norm = AdaIN(up, code)
        if config.skip == "gated":
            self.skip_gate = nn.Conv2d(up + c1, 1, 3, padding=1)
            self.gate_from_code = nn.Linear(code, 1)
        self.fuse_skip = nn.Conv2d(up + (c1 if config.skip != "none" else 0), up, 3, padding=1)
        self.fuse_norm = AdaIN(up, code)
        self.upconv2 = nn.Conv2d(up, 3, 7, padding=3)

    # --- the two halves ---------------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> Encoding:
        """images: float [B, 3, S, S] in [0, 1]."""
        skip = self.conv1(images * 2 - 1)
        content = self.res_blocks(self.conv2(skip))
        mean, logvar = self.to_latent(content).chunk(2, dim=1)
        logvar = logvar.clamp(-8.0, 4.0)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
        return Encoding(content, skip, mean, logvar, latent)

    def applied_params(
        self, source_params: torch.Tensor, target_style: torch.Tensor, params: torch.Tensor, params_mask: torch.Tensor
    ) -> torch.Tensor:
        """Overrides where the mask says so, the source's parameters (`heads(...)["source_params"]`) elsewhere,
        clamped to the target's bounds."""
        mask = params_mask.clamp(0.0, 1.0)
        wanted = mask * params + (1 - mask) * source_params
        weights = style_weights(target_style)
        low, high = weights @ self.bounds[:, :, 0], weights @ self.bounds[:, :, 1]
        return torch.minimum(torch.maximum(wanted, low), high)

    def decode(self, encoding: Encoding, target_style: torch.Tensor, applied_params: torch.Tensor) -> torch.Tensor:
        """The mapped faces, float [B, 3, S, S] in [0, 1]."""
        style = style_weights(target_style) @ self.style_embedding
        code = self.to_code(
            torch.cat(
                [
                    style,
                    encoding.part("identity"),
                    encoding.part("expression"),
                    encoding.part("auxiliary"),
                    self.params_embedding(applied_params),
                ],
                dim=1,
            )
        )
        x = encoding.content
        if self.config.params_edit:
            x = x + self.edit(encoding, applied_params)
        for block in self.style_blocks:
            x = block(x, code)
        x = self.attention(x)
        x = F.leaky_relu(self.up1_norm(self.upconv1(x), code), 0.2)
        if self.config.skip == "full":
            x = torch.cat([x, encoding.skip], dim=1)
        elif self.config.skip == "gated":
            gate = torch.sigmoid(
                self.skip_gate(torch.cat([x, encoding.skip], dim=1)) + self.gate_from_code(code)[:, :, None, None]
            )
            x = torch.cat([x, gate * encoding.skip], dim=1)
        x = F.leaky_relu(self.fuse_norm(self.fuse_skip(x), code), 0.2)
        x = self.upconv2(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return (torch.tanh(x) + 1) / 2

    def edit(self, encoding: Encoding, applied_params: torch.Tensor) -> torch.Tensor:
        """The change an override makes to the content map: Σ over parameters of (applied − read) × that
        parameter's field. Linear in the difference, so a request equal to what the encoder read changes nothing;
        the field depends on the content, so it can open this face's mouth where this face's mouth is."""
        change = applied_params - self.read_params(encoding).detach()  # the read head learns apart
        b, c, h, w = encoding.content.shape
        fields = self.params_edit_field(encoding.content).view(b, len(ACTION_PARAMS), c, h, w)
        return (change[:, :, None, None, None].to(fields.dtype) * fields).sum(dim=1)

    def read_params(self, encoding: Encoding) -> torch.Tensor:
        """The action parameters the encoder reads from the source, in [0, 1]."""
        return torch.sigmoid(self.params_head(encoding.part("expression")))

    def heads(self, encoding: Encoding) -> dict[str, torch.Tensor]:
        expression = encoding.part("expression")
        return {
            "source_params": self.read_params(encoding),
            "source_style_logits": self.source_style_head(encoding.part("style")),
            "emotion_logits": self.emotion_head(expression),
            "expression_style_logits": self.expression_style_probe(_GradientReversal.apply(expression)),
        }

    # --- registry contract ------------------------------------------------------------------------------------
    def forward(
        self, images: torch.Tensor, target_style: torch.Tensor, params: torch.Tensor, params_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        encoding = self.encode(images)
        heads = self.heads(encoding)
        applied = self.applied_params(heads["source_params"], target_style, params, params_mask)
        return {
            "mapped": self.decode(encoding, target_style, applied),
            "applied_params": applied,
            **heads,
            "latent_mean": encoding.mean,
            "latent_logvar": encoding.logvar,
        }

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        size = self.config.image_size
        target = F.one_hot(torch.randint(len(STYLES), (batch,)), len(STYLES)).float()
        return (
            torch.rand(batch, 3, size, size),
            target,
            torch.rand(batch, len(ACTION_PARAMS)),
            (torch.rand(batch, len(ACTION_PARAMS)) < 0.5).float(),
        )

    def serving_signature(self) -> dict:
        size = self.config.image_size
        return {
            "inputs": [
                ("image", "UINT8", [size, size, 3]),
                ("target_style", "FP32", [len(STYLES)]),
                ("params", "FP32", [len(ACTION_PARAMS)]),
                ("params_mask", "FP32", [len(ACTION_PARAMS)]),
            ],
            "outputs": [
                ("mapped", "UINT8", [size, size, 3]),
                ("applied_params", "FP32", [len(ACTION_PARAMS)]),
                ("source_params", "FP32", [len(ACTION_PARAMS)]),
                ("source_style_logits", "FP32", [len(STYLES)]),
                ("emotion_logits", "FP32", [len(EMOTIONS)]),
            ],
        }

    def serving_bounds(self) -> dict[str, tuple[float, float]]:
        """Style weights, action parameters and their mask all live in [0, 1]; the served model refuses others."""
        return {"target_style": (0, 1), "params": (0, 1), "params_mask": (0, 1)}

    def serving_module(self) -> nn.Module:
        return StyleMapperServing(self)


class StyleMapperServing(nn.Module):
    """Raw uint8 NHWC pixels in and out (docs/architecture.md, serving contract); the mapping itself is the
    network's."""

    def __init__(self, network: StyleMapper):
        super().__init__()
        self.network = network

    def forward(self, image, target_style, params, params_mask):
        outputs = self.network(image.permute(0, 3, 1, 2).to(torch.float32) / 255.0, target_style, params, params_mask)
        mapped = (outputs["mapped"] * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return (
            mapped,
            outputs["applied_params"],
            outputs["source_params"],
            outputs["source_style_logits"],
            outputs["emotion_logits"],
        )


def _build(config: StyleMapperConfig) -> StyleMapper:
    return StyleMapper(config)


register_network("style_mapper-cpu", CPU, _build)
register_network("style_mapper-gpu", GPU, _build)
