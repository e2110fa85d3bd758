"""The engagement report of one clip: what `facecast analyze` prints, the store keeps and the app shows.

Plain dataclasses with a JSON round trip (`as_dict` / `from_dict`), so the CLI's `--json`, the DuckDB row and the
app all read the same document. Every predicted number is a `Scored` value: the point estimate and its conformal
interval (90 % unless `coverage` says otherwise), because a marketing decision needs to know how sure we are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from facecast.engagement_features import DEFAULT_ENGAGEMENT_DESCRIPTION, DEFAULT_ENGAGEMENT_VERSION, logit_interval

# 2: engagement_lead_logit (a version-1 reader would fail on the unknown field; now it says the report is newer)
# 3: engagement_model, which served engagement version scored the clip (a studio's calibrated model or the default)
# 4: weights, the served weights' digests (ClipAnalyzer.weights)
REPORT_VERSION = 4


@dataclass(frozen=True)
class Scored:
    value: float
    low: float
    high: float

    @classmethod
    def in_logit_interval(cls, value: float, logit_halfwidth: float) -> Scored:
        """The interval σ(logit(value) ∓ w) of a probability whose half-width was calibrated in logit space."""
        low, high = logit_interval(value, logit_halfwidth)
        return cls(round(float(value), 4), round(float(low), 4), round(float(high), 4))


@dataclass(frozen=True)
class ClipInfo:
    name: str
    sha256: str
    size_bytes: int
    duration_s: float
    width: int
    height: int
    fps: float
    codec: str
    rotation: int = 0


@dataclass(frozen=True)
class EmotionSegment:
    """A stretch of time over which one character shows one emotion (consecutive observations merged)."""

    start_s: float
    end_s: float
    emotion: str
    confidence: float  # mean probability of that emotion over the segment


@dataclass(frozen=True)
class CharacterSummary:
    track_id: int
    first_s: float
    last_s: float
    observations: int
    screen_time_s: float
    dominant_emotion: str
    style: str
    mean_face_height: float  # fraction of the frame height
    timeline: list[EmotionSegment] = field(default_factory=list)


@dataclass(frozen=True)
class KeyMoment:
    """A moment the model weighted heavily: who showed what, when (with a face thumbnail as PNG, base64)."""

    t_s: float
    weight: float  # share of the engagement model's attention (all moments of a window sum to 1)
    track_id: int
    emotion: str
    confidence: float
    thumbnail_png_b64: str = field(default="", repr=False)


@dataclass(frozen=True)
class CurvePoint:
    t_s: float  # start of the second
    value: float
    low: float
    high: float


@dataclass
class EngagementReport:
    clip: ClipInfo
    faces_found: bool
    engagement: Scored | None = None
    engagement_class: str | None = None
    class_probabilities: dict[str, float] = field(default_factory=dict)
    resonance: Scored | None = None
    shareability: Scored | None = None
    appeal: dict[str, Scored] = field(default_factory=dict)
    curve: list[CurvePoint] = field(default_factory=list)
    characters: list[CharacterSummary] = field(default_factory=list)
    key_moments: list[KeyMoment] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    # {model: digest of the weights it served} (facecast.clips.pipeline.ClipAnalyzer.weights); {} in reports stored
    # before version 4
    weights: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    interval_coverage: float = 0.9
    # the smallest difference of two clips' engagement logits the model can tell apart at that coverage (the
    # engagement model's calibrated `engagement_lead`); None in reports stored before it existed
    engagement_lead_logit: float | None = None
    # {"version": N, "description": ...}: the engagement model version that scored the clip (the shipped default
    # "synthetic audience model v1" or a studio's calibrated one); None in reports stored before versions existed,
    # which the default made
    engagement_model: dict[str, Any] | None = None
    version: int = REPORT_VERSION

    @property
    def engagement_version(self) -> int:
        return int((self.engagement_model or {}).get("version", DEFAULT_ENGAGEMENT_VERSION))

    @property
    def engagement_model_description(self) -> str:
        return str((self.engagement_model or {}).get("description", DEFAULT_ENGAGEMENT_DESCRIPTION))

    @property
    def message(self) -> str:
        """One line for people: the headline, or why there is none."""
        if not self.faces_found:
            return (
                f"{self.clip.name}: no faces found in {self.clip.duration_s:.1f} s, so there is no engagement "
                "prediction"
            )
        e, resonance, shareability = self.engagement, self.resonance, self.shareability
        assert e is not None and resonance is not None and shareability is not None, "faces found: scores are set"
        return (
            f"{self.clip.name}: engagement {e.value:.2f} [{e.low:.2f}, {e.high:.2f}] ({self.engagement_class}), "
            f"resonance {resonance.value:.2f}, shareability {shareability.value:.2f}"
        )

    @property
    def provenance(self) -> str:
        """Where the engagement numbers come from, in one sentence for people."""
        if self.engagement_version == DEFAULT_ENGAGEMENT_VERSION:
            return (
                f"Engagement model v{self.engagement_version}: {self.engagement_model_description}, learned from "
                "synthetic clips whose audience response is a documented function (docs/engagement-ground-truth.md), "
                "not from a real audience. Calibrate it on your own trailers' metrics to learn yours."
            )
        return f"Engagement model v{self.engagement_version}: {self.engagement_model_description}."

    def as_dict(self, *, thumbnails: bool = True) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        if not thumbnails:
            for moment in document["key_moments"]:
                moment.pop("thumbnail_png_b64", None)
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> EngagementReport:
        def scored(value: dict[str, float] | None) -> Scored | None:
            return Scored(**value) if value is not None else None

        data = dict(document)
        if data.get("version", REPORT_VERSION) > REPORT_VERSION:
            raise ValueError(
                f"report version {data['version']} is newer than this facecast understands ({REPORT_VERSION})"
            )
        data["clip"] = ClipInfo(**data["clip"])
        for name in ("engagement", "resonance", "shareability"):
            data[name] = scored(data.get(name))
        data["appeal"] = {group: Scored(**value) for group, value in data.get("appeal", {}).items()}
        data["curve"] = [CurvePoint(**point) for point in data.get("curve", [])]
        data["characters"] = [
            CharacterSummary(**{**c, "timeline": [EmotionSegment(**s) for s in c.get("timeline", [])]})
            for c in data.get("characters", [])
        ]
        data["key_moments"] = [KeyMoment(**m) for m in data.get("key_moments", [])]
        return cls(**data)
