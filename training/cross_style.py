"""Cross-style training signal for the expression encoder (issue 14 item 3): one face drawn in several styles.

Why: trained on independent stills, the encoder may read an expression through cues that only one style draws
(anime's tall eyes, cartoon's bold mouth line), and then fails on a style it never saw: the leave-one-style-out
drop was 46 points for realistic faces. The style sets of training/data/style_pairs.py draw the *same* character,
expression and scene in every style, which gives two signals independent stills cannot:

- **consistency**: the renderings of one face should give the same expression vector and the same emotion
  distribution, whatever the style. `consistency_loss` is the spread of each set's renderings around their mean
  (cosine distance of the expression vectors + squared distance of the emotion log-probabilities). Only renderings
  that share the set's majority label take part: clipping an expression to a style's bounds can change its label.
- **style mixes**: a pixel-wise convex mix of two renderings of one face in one scene is a face in no trained
  style, with the same label; `style_mix` makes them, a cheap stand-in for the styles the model will meet later.

`PairedStyleBatches` draws these from style sets, leaving out a held-out style for leave-one-style-out runs.

Measured (`make loso loso-cross-style evaluate`, docs/results-expression.md): with weight 1.0 and 16 sets per step
these terms made every held-out style worse under the 3-epoch protocol, so the shipped encoder is trained without
them. They stay as the measured baseline for the next cross-style attempt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facecast.vocab import STYLES
from training.data.style_pairs import load_style_sets


class PairedStyleBatches:
    """Random mini-batches of style sets: images uint8 [P, K, S, S, 3] of the K kept styles, with their labels."""

    def __init__(self, folder: Path, image_size: int, exclude_style: str | None = None):
        # Memory-mapped, so only the kept styles' renderings are read into memory (not the edited fifth one).
        sets = load_style_sets(folder)
        size = sets["images"].shape[2]
        if size != image_size:
            raise ValueError(
                f"style sets in {folder} are {size} px, the encoder reads {image_size} px: build them "
                f"with `python -m training.data.style_pairs --size {image_size}`"
            )
        if exclude_style is not None and exclude_style not in STYLES:
            raise ValueError(f"unknown style {exclude_style!r}; expected one of {STYLES}")
        self.styles = [index for index, style in enumerate(STYLES) if style != exclude_style]
        # Only the plain renderings (the fifth, edited, one is a different expression).
        self.images = torch.from_numpy(np.ascontiguousarray(sets["images"][:, self.styles]))
        self.emotions = torch.from_numpy(np.ascontiguousarray(sets["emotions"][:, self.styles]))
        self.params = torch.from_numpy(np.ascontiguousarray(sets["params"][:, self.styles]).astype(np.float32))

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, count: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        picks = torch.randint(len(self.images), (count,), generator=generator)
        styles = torch.tensor(self.styles).expand(count, -1)
        return {
            "images": self.images[picks],
            "emotion": self.emotions[picks],
            "style": styles.clone(),
            "params": self.params[picks],
        }


def majority_mask(emotions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """emotions long [P, K] → (each set's most common label [P], bool [P, K] where a rendering has that label)."""
    label = torch.mode(emotions, dim=1).values
    return label, emotions == label[:, None]


def consistency_loss(expression: torch.Tensor, emotion_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Spread of each set's renderings around their mean; expression [P, K, D], logits [P, K, E], mask bool [P, K].

    Zero when every masked rendering of a set gives the same vector and logits (up to a constant shift of the
    logits). Sets with fewer than two masked renderings contribute nothing.
    """
    weights = mask.float()
    counts = weights.sum(1, keepdim=True)
    usable = (counts[:, 0] >= 2).float()
    if usable.sum() == 0:
        return expression.sum() * 0
    unit = F.normalize(expression.float(), dim=-1)
    mean_unit = (unit * weights[..., None]).sum(1) / counts.clamp(min=1)
    cosine_spread = 1 - (unit * F.normalize(mean_unit, dim=-1)[:, None]).sum(-1)  # [P, K]
    log_probs = F.log_softmax(emotion_logits.float(), dim=-1)
    mean_log_probs = (log_probs * weights[..., None]).sum(1) / counts.clamp(min=1)
    logit_spread = ((log_probs - mean_log_probs[:, None]) ** 2).sum(-1)  # [P, K]
    per_set = ((cosine_spread + logit_spread) * weights).sum(1) / counts[:, 0].clamp(min=1)
    return (per_set * usable).sum() / usable.sum()


def style_mix(images: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One mix per set: float images [P, K, 3, S, S] → [P, 3, S, S], a random convex mix of two masked renderings.

    The weight of the first is uniform in [0.3, 0.7], so neither style dominates. A set with one usable rendering
    gives that rendering unchanged.
    """
    sets, kinds = mask.shape
    scores = torch.rand((sets, kinds), generator=generator) + mask.float() * 2  # masked renderings first
    first, second = scores.topk(2, dim=1).indices.unbind(1)
    second = torch.where(mask[torch.arange(sets), second], second, first)
    weight = (0.3 + 0.4 * torch.rand(sets, generator=generator)).to(images.dtype)[:, None, None, None]
    rows = torch.arange(sets)
    return weight * images[rows, first] + (1 - weight) * images[rows, second]
