"""A plain art-style classifier for 128-px faces, trained apart from the style mapper (issue 15).

Two uses, always two separately trained instances, never the same weights:
  - the **judge**: docs/results-mapping.md's second opinion on style conformity beside the served
    expression_encoder. It learns from renderings of characters the mapper never sees in training (the "val"
    character range, drawn with their own scene seed) plus the licensed emoji, so a mapper cannot have learned to
    please it; training/style_judge.py trains it.
  - the **critic**: an optional frozen loss term of training/train_style_mapper.py (`--style-critic`), trained on
    the mapper's own training characters only.
  - the **params critic**: the critic's shape reading the four action parameters instead of the style, the
    override loss of training/train_style_mapper.py (`--params-critic`), also trained on the training characters.
The judge's architecture differs from the expression_encoder (no multi-scale stem, no attention pooling, full 128-px
input, batch norm), and the critic's from both (64-px input, group norm, other widths): a mapper trained against
a critic learns some of that network's own quirks, and those carry over to a judge of the same architecture far
more than to a different one (measured: an ablation with a critic of the judge's own architecture scored 0.998 by
that judge and 0.479 by the expression_encoder, docs/results-mapping.md).

Not a registered (served) network: it is evaluation and training machinery, like the baselines.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facecast.vocab import ACTION_PARAMS, STYLES


@dataclass(frozen=True)
class StyleJudgeConfig:
    image_size: int = 128  # what it is given
    input_size: int = 128  # what it looks at (pictures are averaged down to this)
    widths: tuple[int, ...] = (24, 48, 96, 160)
    norm: str = "batch"  # or "group"
    # "style": logits over STYLES; "params": the four action parameters (mouth, eye, brow, cheek) in [0, 1], as drawn
    task: str = "style"


JUDGE = StyleJudgeConfig()
CRITIC = StyleJudgeConfig(input_size=64, widths=(32, 64, 128), norm="group")
# The critic's shape reading the action parameters instead: the style mapper's override loss (issue 15, stage 4).
# Trained apart on the training characters like the style critic, so the served expression_encoder, which judges
# whether an override moved the drawing, is not what the mapper learned to please.
PARAMS_CRITIC = dataclasses.replace(CRITIC, task="params")


class StyleJudge(nn.Module):
    """float [B, 3, S, S] in [0, 1] → style logits [B, len(STYLES)] (task "style") or the action parameters read
    from the picture, [B, len(ACTION_PARAMS)] in [0, 1] (task "params")."""

    def __init__(self, config: StyleJudgeConfig = JUDGE):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = 3

        def norm(width: int) -> nn.Module:
            return nn.BatchNorm2d(width) if config.norm == "batch" else nn.GroupNorm(8, width)

        for width in config.widths:
            layers += [
                nn.Conv2d(channels, width, 3, 2, 1, bias=False),
                norm(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, 1, 1, bias=False),
                norm(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        if config.task not in ("style", "params"):
            raise ValueError(f"task must be style or params, not {config.task!r}")
        outputs = len(STYLES) if config.task == "style" else len(ACTION_PARAMS)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(channels, outputs))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.config.input_size:
            images = F.avg_pool2d(images, images.shape[-1] // self.config.input_size)
        out = self.head(self.features(images * 2 - 1).mean(dim=(2, 3)))
        return out if self.config.task == "style" else torch.sigmoid(out)


def save_style_judge(model: StyleJudge, path: Path, **extra) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    config = {**asdict(model.config), "widths": list(model.config.widths)}
    torch.save({"style_judge": config, "state_dict": state, **extra}, tmp)
    tmp.replace(path)
    return path


def load_style_judge(path: str | Path) -> StyleJudge:
    """A trained style judge or critic, frozen, in eval mode on the CPU."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "style_judge" not in checkpoint:
        raise ValueError(f"{path} is not a style judge checkpoint (training/style_judge.py writes those)")
    config = checkpoint["style_judge"]
    if isinstance(config, list):  # the first checkpoints stored only the widths of the judge's architecture
        config = {"widths": config}
    model = StyleJudge(StyleJudgeConfig(**{**config, "widths": tuple(config["widths"])}))
    model.load_state_dict(checkpoint["state_dict"])
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()
