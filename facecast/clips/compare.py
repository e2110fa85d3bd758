"""Comparing analysed cuts: differences per score and audience group, the best cut per group, and the seconds
(with the key moments in them) where the cuts' curves part the most."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from facecast.clips.report import EngagementReport
from facecast.engagement_features import lead_is_clear
from facecast.vocab import AUDIENCE_GROUPS

SCORES = ("engagement", "resonance", "shareability")


def score_rows(report: EngagementReport) -> dict[str, tuple[float, float, float]]:
    """score name -> (value, low, high) for every headline score and audience group."""
    rows = {name: getattr(report, name) for name in SCORES}
    rows.update({f"appeal: {group.replace('_', ' ')}": report.appeal.get(group) for group in AUDIENCE_GROUPS})
    return {name: (s.value, s.low, s.high) for name, s in rows.items() if s is not None}


def lead_margin(cuts: dict[str, EngagementReport]) -> float | None:
    """The engagement lead margin the cuts' reports agree on (the widest, if models differ), or None."""
    margins = [report.engagement_lead_logit for report in cuts.values()]
    return None if any(m is None for m in margins) or not margins else max(m for m in margins if m is not None)


def model_mismatch(cuts: dict[str, EngagementReport]) -> str | None:
    """Why these cuts' scores cannot be compared, or None: reports made by different engagement model versions
    (the default and a studio's calibrated model answer different questions about different audiences)."""
    by_version: dict[int, list[str]] = {}
    for name, report in cuts.items():
        by_version.setdefault(report.engagement_version, []).append(name)
    if len(by_version) < 2:
        return None
    described = {report.engagement_version: report.engagement_model_description for report in cuts.values()}
    parts = "; ".join(
        f"{', '.join(names)}: version {version} ({described[version]})" for version, names in sorted(by_version.items())
    )
    return (
        f"These cuts were scored by different engagement models ({parts}), so their scores are not comparable. "
        "Re-score the older analyses with the active model in History, then compare."
    )


def differences(cuts: dict[str, EngagementReport]) -> pd.DataFrame:
    """One row per score: each cut's value, the best cut, its lead over the runner-up, and whether that lead is
    clear of the model's uncertainty (`lead_is_clear`); "not comparable" for every score when the cuts were scored
    by different engagement model versions (`model_mismatch`)."""
    rows = []
    per_cut = {name: score_rows(report) for name, report in cuts.items()}
    margin = lead_margin(cuts)
    mismatch = model_mismatch(cuts) is not None
    names = list(next(iter(per_cut.values())).keys()) if per_cut else []
    for score in names:
        values = {cut: rows_[score] for cut, rows_ in per_cut.items() if score in rows_}
        if len(values) < 2:
            continue
        ordered = sorted(values.items(), key=lambda item: -item[1][0])
        (best, best_row), (_, second_row) = ordered[0], ordered[1]
        clear = lead_is_clear(best_row, second_row, margin if score == "engagement" else None)
        rows.append(
            {
                "score": score,
                **{cut: round(v[0], 3) for cut, v in values.items()},
                "best cut": best,
                "lead": round(best_row[0] - second_row[0], 3),
                "clear?": "not comparable" if mismatch else ("yes" if clear else "within uncertainty"),
            }
        )
    return pd.DataFrame(rows)


def best_per_group(cuts: dict[str, EngagementReport]) -> pd.DataFrame:
    def engagement(cut: str) -> float:
        scored = cuts[cut].engagement
        return scored.value if scored is not None else -1.0  # a cut without faces has no engagement to lead with

    rows = [{"audience": "everyone (engagement)", "best cut": max(cuts, key=engagement)}]
    rows += [
        {"audience": group.replace("_", " "), "best cut": max(cuts, key=lambda c: cuts[c].appeal[group].value)}
        for group in AUDIENCE_GROUPS
        if all(group in r.appeal for r in cuts.values())
    ]
    return pd.DataFrame(rows)


def overlaid_curves(cuts: dict[str, EngagementReport]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"cut": name, "second": p.t_s, "time": p.t_s + 0.5, "engagement": p.value, "low": p.low, "high": p.high}
            for name, report in cuts.items()
            for p in report.curve
        ]
    )


@dataclass(frozen=True)
class Divergence:
    second: float
    values: dict[str, float]  # cut -> engagement at that second
    moments: list[str]  # what happened then, per cut (key moments within a second)


def divergent_moments(cuts: dict[str, EngagementReport], top: int = 3) -> list[Divergence]:
    """The seconds where the cuts' engagement curves are furthest apart (max − min over cuts, on the shared time
    axis up to the shortest cut), with the key moments and on-screen emotions that explain them."""
    curves = {name: {round(p.t_s): p.value for p in report.curve} for name, report in cuts.items()}
    shared = sorted(set.intersection(*(set(c) for c in curves.values()))) if curves else []
    if not shared:
        return []
    spread = np.array([max(c[s] for c in curves.values()) - min(c[s] for c in curves.values()) for s in shared])
    found = []
    for index in np.argsort(-spread, kind="stable")[:top]:
        second = shared[int(index)]
        found.append(
            Divergence(
                float(second),
                {name: round(curve[second], 3) for name, curve in curves.items()},
                [_what_happened(name, report, second) for name, report in cuts.items()],
            )
        )
    return found


def _what_happened(name: str, report: EngagementReport, second: float) -> str:
    moments = [m for m in report.key_moments if second - 1 <= m.t_s <= second + 2]
    if moments:
        return (
            f"{name}: key moment at {moments[0].t_s:.1f} s, character {moments[0].track_id} shows {moments[0].emotion}"
        )
    on_screen = [
        f"character {c.track_id} {s.emotion}"
        for c in report.characters
        for s in c.timeline
        if s.start_s <= second + 1 and s.end_s >= second
    ]
    return f"{name}: " + (", ".join(on_screen[:3]) if on_screen else "no face on screen")
