"""Batch-level image augmentation in pure torch (torchvision's CUDA wheel does not import next to CPU torch here).

Why these transforms: the expression encoder is trained mostly on synthetic characters and must read real cartoon,
anime and 3D faces, cropped by a detector. So the augmentation varies what must NOT change the label: framing
(scale, shift, head roll), mirror image, lighting, colour palette and skin colour, grayscale art, soft focus and
noise. It leaves alone what carries the expression (the shapes of mouth, eyes and brows). All randomness comes
from the caller's torch.Generator, so a training run is reproducible.

Speed matters: this runs on every training batch on 2 CPU cores, next to the network. So:
- all random numbers of a batch are drawn in one call and the small per-image matrices are built in numpy
  (dozens of tiny torch ops would cost more than the image work);
- scale, shift, roll and flip are ONE affine grid_sample (the dominant cost, ~5 ms per 128x3x64x64 batch on one
  core of these machines);
- every colour change (brightness, contrast, saturation, grayscale, hue rotation, colour cast, palette swap) is ONE
  3x3 matrix + offset per image, applied with one batched matmul;
- blur and noise touch only the images drawn for them, and noise comes from a fixed bank instead of fresh randn.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# Rec. 601 luma weights: what "gray" means for saturation, grayscale and contrast.
LUMA = np.array([0.299, 0.587, 0.114])

# Ranges at strength 1.0 (each scales linearly with `strength`; probabilities are capped at their value here).
MAX_ZOOM = 0.15              # scale in [1 - 0.15, 1 + 0.15]
MAX_SHIFT = 0.08             # translation, as a fraction of the image side
MAX_ROLL_DEGREES = 15.0      # in-plane head roll
MAX_BRIGHTNESS = 0.25        # multiplicative, 1 ± 0.25
MAX_CONTRAST = 0.3
MAX_SATURATION = 0.4
MAX_HUE_DEGREES = 18.0       # rotation of colours around the gray axis
MAX_CAST = 0.08              # per-channel gain: white balance, tinted light
P_FLIP = 0.5
P_GRAYSCALE = 0.05
P_PALETTE_SWAP = 0.08        # permute RGB channels: a blue or green character instead of a yellow one
P_BLUR = 0.15                # gaussian-like blur, sigma up to 1 px (at 64 px)
P_NOISE = 0.25
MAX_NOISE_STD = 0.04
NOISE_BANK_SIZE = 64

# The non-identity permutations of (R, G, B), for palette swaps.
_PERMUTATIONS = np.array([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
# Rotation about the gray axis k = (1,1,1)/sqrt(3): R = cos I + sin [k]x + (1 - cos) k k^T (Rodrigues).
_GRAY_AXIS = np.full(3, 1 / math.sqrt(3))
_GRAY_CROSS = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / math.sqrt(3)


def _sample_transforms(batch: int, generator: torch.Generator, strength: float) -> dict[str, np.ndarray]:
    """Every random choice for a batch, from one draw of the generator (so the result is a function of it)."""
    u = torch.rand((batch, 16), generator=generator, dtype=torch.float64).numpy()
    signed = u * 2 - 1  # uniform in [-1, 1]
    capped = min(strength, 1.0)

    # Geometry: theta maps output to input coordinates, so zoom > 1 samples a smaller area (enlarges the face).
    zoom = 1 + signed[:, 0] * MAX_ZOOM * strength
    angle = signed[:, 1] * math.radians(MAX_ROLL_DEGREES) * strength
    shift = signed[:, 2:4] * 2 * MAX_SHIFT * strength  # grid units: the image side is 2
    flip = np.where(u[:, 4] < P_FLIP, -1.0, 1.0)
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = np.stack([np.stack([cos * flip, -sin, shift[:, 0]], axis=1),
                      np.stack([sin * flip, cos, shift[:, 1]], axis=1)], axis=1)

    # Colour, applied in this order: cast, hue, saturation (0 = grayscale), palette swap, brightness, contrast.
    eye = np.eye(3)
    cast = np.eye(3) * (1 + signed[:, 5:8, None] * MAX_CAST * strength)
    hue_angle = signed[:, 8] * math.radians(MAX_HUE_DEGREES) * strength
    hc, hs = np.cos(hue_angle)[:, None, None], np.sin(hue_angle)[:, None, None]
    hue = hc * eye + hs * _GRAY_CROSS + (1 - hc) * np.outer(_GRAY_AXIS, _GRAY_AXIS)
    saturation = 1 + signed[:, 9] * MAX_SATURATION * strength
    saturation = np.where(u[:, 10] < P_GRAYSCALE * capped, 0.0, saturation)[:, None, None]
    saturate = saturation * eye + (1 - saturation) * np.outer(np.ones(3), LUMA)
    swapped = u[:, 11] < P_PALETTE_SWAP * capped
    # u[:, 11] is below the swap probability for swapped images, so rescaling it picks the permutation.
    which = np.minimum((u[:, 11] / max(P_PALETTE_SWAP * capped, 1e-12) * len(_PERMUTATIONS)).astype(int),
                       len(_PERMUTATIONS) - 1)
    swap = np.where(swapped[:, None, None], eye[_PERMUTATIONS[which]], eye)
    brightness = 1 + signed[:, 12] * MAX_BRIGHTNESS * strength
    contrast = 1 + signed[:, 13] * MAX_CONTRAST * strength
    colour = swap @ saturate @ hue @ cast * brightness[:, None, None]

    blur = u[:, 14] < P_BLUR * capped
    noise = u[:, 15] < P_NOISE * capped
    # Reuse the uniform that chose an image to size its effect (it is uniform below the threshold too).
    blur_amount = 0.4 + 0.6 * u[:, 14] / max(P_BLUR * capped, 1e-12)
    noise_std = MAX_NOISE_STD * strength * u[:, 15] / max(P_NOISE * capped, 1e-12)
    extra = torch.rand(3, generator=generator, dtype=torch.float64).numpy()
    return {"theta": theta, "colour": colour, "contrast": contrast, "blur": blur, "blur_amount": blur_amount,
            "blur_passes": 2 if extra[0] < 0.5 * capped else 1, "noise": noise, "noise_std": noise_std,
            "noise_offset": int(extra[1] * NOISE_BANK_SIZE)}


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, align_corners=False) as one broadcast matmul: ~3x faster here than affine_grid.

    The result must be contiguous: grid_sample reads a transposed grid 3x slower.
    """
    xs = (torch.arange(width, dtype=theta.dtype, device=theta.device) * 2 + 1) / width - 1   # pixel centres
    ys = (torch.arange(height, dtype=theta.dtype, device=theta.device) * 2 + 1) / height - 1
    base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width),
                        torch.ones(height, width, dtype=theta.dtype, device=theta.device)], dim=-1)
    return torch.matmul(base.reshape(height * width, 3), theta.transpose(1, 2)).view(-1, height, width, 2)


def _binomial_blur(images: torch.Tensor, passes: int) -> torch.Tensor:
    """Gaussian-like blur: `passes` rounds of the separable [1/4, 1/2, 1/4] kernel, edges replicated.

    Each round adds a variance of 1/2 px^2 per axis (sigma 0.71 px after one, 1.0 after two). Written as slice
    arithmetic because torch's depthwise convolutions are 5-10x slower than this on small CPU batches.
    """
    out = images
    for _ in range(passes):
        for axis in (-1, -2):
            source = out
            out = source * 0.5
            last = source.shape[axis] - 1
            out.narrow(axis, 1, last).add_(source.narrow(axis, 0, last), alpha=0.25)
            out.narrow(axis, 0, 1).add_(source.narrow(axis, 0, 1), alpha=0.25)
            out.narrow(axis, 0, last).add_(source.narrow(axis, 1, last), alpha=0.25)
            out.narrow(axis, last, 1).add_(source.narrow(axis, last, 1), alpha=0.25)
    return out


_NOISE_BANKS: dict[tuple, torch.Tensor] = {}


def _noise_bank(height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """NOISE_BANK_SIZE unit-gaussian noise images, made once per size from a FIXED seed.

    Fresh gaussian noise costs ~0.1 ms per 64-px image on these CPUs, as much as all the colour work; picking from
    a bank is 10x cheaper and, being seeded independently of the caller, keeps augment_batch a pure function of
    its generator.
    """
    key = (height, width, dtype, str(device))
    if key not in _NOISE_BANKS:
        bank_generator = torch.Generator().manual_seed(20_240_601)
        bank = torch.randn((NOISE_BANK_SIZE, 3, height, width), generator=bank_generator)
        _NOISE_BANKS[key] = bank.to(device=device, dtype=dtype)
    return _NOISE_BANKS[key]


def augment_batch(images: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Augment a batch of float images [B, 3, H, W] in [0, 1]; returns a new tensor in [0, 1].

    `strength` scales every range (0 = unchanged, 1 = the defaults above, > 1 stronger). The same generator
    state and input give the same output. The generator must be a CPU generator; images may be on any device.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected float images [B, 3, H, W], got {list(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got {images.dtype}")
    batch, _, height, width = images.shape
    if strength <= 0 or batch == 0:
        return images.clone()
    plan = _sample_transforms(batch, generator, strength)
    device, dtype = images.device, images.dtype

    # Geometry: one resampling; border padding extends the background like facecast.media.images.fit_square does.
    theta = torch.from_numpy(plan["theta"]).to(device=device, dtype=dtype)
    out = F.grid_sample(images, _affine_grid(theta, height, width), mode="bilinear", padding_mode="border",
                        align_corners=False)

    # Colour: x -> c * (M x) + (1 - c) * mean_gray(M x). The mean is taken on the input: framing barely moves it.
    channel_means = images.mean(dim=(2, 3)).double().cpu().numpy()
    matrix = plan["colour"]
    mean_gray = ((matrix @ channel_means[:, :, None])[:, :, 0] @ LUMA)
    offset = ((1 - plan["contrast"]) * mean_gray)[:, None, None]
    matrix = matrix * plan["contrast"][:, None, None]
    # bmm + in-place add: baddbmm would first copy the broadcast offset into a full-size tensor.
    out = torch.bmm(torch.from_numpy(matrix).to(device=device, dtype=dtype), out.reshape(batch, 3, -1))
    out = out.add_(torch.from_numpy(offset).to(device=device, dtype=dtype)).view(batch, 3, height, width)

    blurred = np.flatnonzero(plan["blur"])
    if len(blurred):
        index = torch.from_numpy(blurred).to(device)
        sharp = out.index_select(0, index)
        amount = torch.from_numpy(plan["blur_amount"][blurred]).to(device=device, dtype=dtype)[:, None, None, None]
        out.index_copy_(0, index, sharp.lerp_(_binomial_blur(sharp, plan["blur_passes"]), amount))

    noisy = np.flatnonzero(plan["noise"])
    if len(noisy):
        bank = _noise_bank(height, width, dtype, device)
        # Consecutive bank images from a random start: a cheap, reproducible choice of patterns.
        picks = torch.from_numpy((noisy + plan["noise_offset"]) % NOISE_BANK_SIZE).to(device)
        stds = torch.from_numpy(plan["noise_std"][noisy]).to(device=device, dtype=dtype)[:, None, None, None]
        out.index_add_(0, torch.from_numpy(noisy).to(device), bank.index_select(0, picks).mul_(stds))

    return out.clamp_(0.0, 1.0)
