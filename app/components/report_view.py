"""Showing one engagement report in the app: headline scores, curve + emotion timeline, moments, characters.

Everything here reads a stored `EngagementReport`; nothing calls Triton, so reopening a report is instant.
"""

from __future__ import annotations

import base64
import json

import altair as alt
import pandas as pd
import streamlit as st

from facecast.clips.report import EngagementReport
from facecast.clips.report_html import report_html
from facecast.vocab import AUDIENCE_GROUPS, EMOTIONS

EMOTION_COLORS = {
    "happiness": "#f2b705",
    "sadness": "#3b6fb6",
    "anger": "#d62828",
    "surprise": "#f77f00",
    "fear": "#7b2cbf",
    "disgust": "#2a9d8f",
    "neutral": "#9aa5b1",
}
GROUP_LABELS = {"children": "Children", "teens": "Teens", "young_adults": "Young adults", "adults": "Adults"}


def fmt(value: float) -> str:
    return f"{value:.2f}"


def interval(scored) -> str:
    return f"90 % interval {scored.low:.2f}–{scored.high:.2f}"


def scores_table(report: EngagementReport) -> pd.DataFrame:
    """Every predicted number with its interval, one row per score (what the HTML export and tests read too)."""
    rows = [("engagement", report.engagement), ("resonance", report.resonance), ("shareability", report.shareability)]
    rows += [(f"appeal: {GROUP_LABELS[g].lower()}", report.appeal[g]) for g in AUDIENCE_GROUPS if g in report.appeal]
    return pd.DataFrame(
        [
            {"score": name, "value": f"{s.value:.3f}", "low": f"{s.low:.3f}", "high": f"{s.high:.3f}"}
            for name, s in rows
            if s is not None
        ]
    )


def curve_frame(report: EngagementReport) -> pd.DataFrame:
    # Each value covers one second: drawn at the middle of its second, so the curve spans the whole clip.
    return pd.DataFrame(
        [
            {"second": p.t_s, "time": p.t_s + 0.5, "engagement": p.value, "low": p.low, "high": p.high}
            for p in report.curve
        ]
    )


def timeline_frame(report: EngagementReport) -> pd.DataFrame:
    rows = [
        {
            "character": f"character {c.track_id}",
            "start": s.start_s,
            "end": max(s.end_s, s.start_s + 0.25),
            "emotion": s.emotion,
            "confidence": s.confidence,
        }
        for c in report.characters
        for s in c.timeline
    ]
    return pd.DataFrame(rows, columns=["character", "start", "end", "emotion", "confidence"])


def curve_chart(report: EngagementReport) -> alt.VConcatChart:
    """The per-second curve over the characters' emotion timeline, sharing one time axis.

    Linked: hovering shows the same second on both charts; dragging over the curve selects a stretch of time and
    the timeline highlights the emotions shown in it."""
    curve = curve_frame(report)
    timeline = timeline_frame(report)
    duration = max(report.clip.duration_s, float(curve["second"].max() + 1) if len(curve) else 1.0)
    x_scale = alt.Scale(domain=[0, duration])
    hover = alt.selection_point(name="hover", on="pointerover", nearest=True, fields=["time"], empty=False)
    brush = alt.selection_interval(name="brush", encodings=["x"])
    base = alt.Chart(curve).encode(x=alt.X("time:Q", scale=x_scale, title="time (s)"))
    band = base.mark_area(opacity=0.2, color="#e4572e").encode(
        y=alt.Y("low:Q", scale=alt.Scale(domain=[0, 1]), title="engagement"), y2="high:Q"
    )
    line = (
        base.mark_line(color="#e4572e", point=True)
        .encode(
            y="engagement:Q",
            tooltip=[
                alt.Tooltip("second:Q", title="second from"),
                alt.Tooltip("engagement:Q", format=".2f"),
                alt.Tooltip("low:Q", format=".2f"),
                alt.Tooltip("high:Q", format=".2f"),
            ],
        )
        .add_params(hover, brush)
    )
    rule = base.mark_rule(color="#444").encode(opacity=alt.condition(hover, alt.value(0.8), alt.value(0)))
    moments = pd.DataFrame(
        [
            {"second": m.t_s, "emotion": m.emotion, "weight": m.weight, "character": m.track_id}
            for m in report.key_moments
        ]
    )
    layers = [band, line, rule]
    if len(moments):
        layers.append(
            alt.Chart(moments)
            .mark_point(shape="triangle-down", size=120, filled=True, color="#222")
            .encode(
                x=alt.X("second:Q", scale=x_scale),
                y=alt.value(6),
                tooltip=["second", "emotion", "character", alt.Tooltip("weight:Q", format=".0%")],
            )
        )
    top = alt.layer(*layers).properties(
        width="container", height=220, title="Engagement per second (band: 90 % interval; ▼ key moments)"
    )
    lanes = (
        alt.Chart(timeline)
        .mark_bar(height=16)
        .encode(
            x=alt.X("start:Q", scale=x_scale, title="time (s)"),
            x2="end:Q",
            y=alt.Y("character:N", title=None),
            color=alt.Color(
                "emotion:N",
                scale=alt.Scale(domain=list(EMOTIONS), range=list(EMOTION_COLORS.values())),
                legend=alt.Legend(orient="bottom", columns=7),
            ),
            opacity=alt.condition(brush, alt.value(1.0), alt.value(0.35)),
            tooltip=[
                "character",
                "emotion",
                alt.Tooltip("start:Q", format=".1f"),
                alt.Tooltip("end:Q", format=".1f"),
                alt.Tooltip("confidence:Q", format=".0%"),
            ],
        )
        .properties(
            width="container", height=max(40, 28 * max(1, timeline["character"].nunique())), title="Emotion timeline"
        )
    )
    lane_rule = (
        alt.Chart(curve)
        .mark_rule(color="#444")
        .encode(x=alt.X("time:Q", scale=x_scale), opacity=alt.condition(hover, alt.value(0.8), alt.value(0)))
    )
    return alt.vconcat(top, alt.layer(lanes, lane_rule).properties(width="container")).resolve_scale(
        color="independent"
    )


def appeal_chart(report: EngagementReport) -> alt.Chart:
    frame = pd.DataFrame(
        [
            {
                "group": GROUP_LABELS[g],
                "appeal": report.appeal[g].value,
                "low": report.appeal[g].low,
                "high": report.appeal[g].high,
            }
            for g in AUDIENCE_GROUPS
            if g in report.appeal
        ]
    )
    order = [GROUP_LABELS[g] for g in AUDIENCE_GROUPS]
    bars = (
        alt.Chart(frame)
        .mark_bar(color="#5b8e7d")
        .encode(
            y=alt.Y("group:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False)),
            x=alt.X("appeal:Q", scale=alt.Scale(domain=[0, 1]), title="appeal (line: 90 % interval)"),
            tooltip=[
                "group",
                alt.Tooltip("appeal:Q", format=".2f"),
                alt.Tooltip("low:Q", format=".2f"),
                alt.Tooltip("high:Q", format=".2f"),
            ],
        )
    )
    whiskers = alt.Chart(frame).mark_rule(color="#222").encode(y=alt.Y("group:N", sort=order), x="low:Q", x2="high:Q")
    return (bars + whiskers).properties(height=200, title="Appeal per audience group")


def show_report(report: EngagementReport, analysis_id: int | None = None, *, key: str = "report") -> None:
    clip = report.clip
    st.subheader(clip.name)
    st.caption(
        f"{clip.duration_s:.1f} s · {clip.width}×{clip.height} · {clip.codec} · "
        + (f"analysis {analysis_id} · " if analysis_id is not None else "")
        + f"analysed in {report.timings_s.get('total', 0):.1f} s "
        f"({report.timings_s.get('realtime_factor', 0):.1f}× real time)"
    )
    for note in report.notes:
        st.info(note, icon=":material/info:")
    if not report.faces_found:
        st.warning(
            "No faces were found in this clip, so there is no engagement prediction. Faces need to be at "
            "least about 40 px tall and visible for half a second or more.",
            icon=":material/face_retouching_off:",
        )
        _downloads(report, key)
        return
    columns = st.columns(4)
    columns[0].metric("Engagement", fmt(report.engagement.value), help=interval(report.engagement))
    columns[0].caption(interval(report.engagement))
    columns[1].metric(
        "Class", report.engagement_class, help=", ".join(f"{k} {v:.0%}" for k, v in report.class_probabilities.items())
    )
    columns[1].caption(", ".join(f"{k} {v:.0%}" for k, v in report.class_probabilities.items()))
    columns[2].metric("Resonance", fmt(report.resonance.value), help=interval(report.resonance))
    columns[2].caption(interval(report.resonance))
    columns[3].metric("Shareability", fmt(report.shareability.value), help=interval(report.shareability))
    columns[3].caption(interval(report.shareability))
    st.caption(report.provenance)
    left, right = st.columns([1, 1])
    left.altair_chart(appeal_chart(report), width="stretch")
    right.table(scores_table(report).set_index("score"))
    st.altair_chart(curve_chart(report), width="stretch")
    if report.key_moments:
        st.markdown("**Key moments** — where the model's attention went")
        cells = st.columns(min(5, len(report.key_moments)))
        for cell, moment in zip(cells * 2, report.key_moments):
            if moment.thumbnail_png_b64:
                cell.image(base64.b64decode(moment.thumbnail_png_b64), width=96)
            cell.caption(
                f"{moment.t_s:.1f} s · character {moment.track_id} · {moment.emotion} "
                f"({moment.confidence:.0%}) · weight {moment.weight:.0%}"
            )
    if report.characters:
        st.markdown("**Characters**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "character": c.track_id,
                        "style": c.style.replace("_", " "),
                        "mostly": c.dominant_emotion,
                        "on screen (s)": round(c.screen_time_s, 1),
                        "first (s)": round(c.first_s, 1),
                        "last (s)": round(c.last_s, 1),
                        "face height": f"{c.mean_face_height:.0%}",
                        "emotions": " → ".join(s.emotion for s in c.timeline[:8])
                        + (" …" if len(c.timeline) > 8 else ""),
                    }
                    for c in report.characters
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    _downloads(report, key)


def _downloads(report: EngagementReport, key: str) -> None:
    stem = report.clip.name.rsplit(".", 1)[0] or "clip"
    left, right, _ = st.columns([1, 1, 3])
    left.download_button(
        "Download report (JSON)",
        data=json.dumps(report.as_dict(), indent=2),
        file_name=f"{stem}-engagement.json",
        mime="application/json",
        key=f"{key}-json",
    )
    right.download_button(
        "Download report (HTML)",
        data=report_html(report),
        file_name=f"{stem}-engagement.html",
        mime="text/html",
        key=f"{key}-html",
    )
