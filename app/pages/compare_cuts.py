"""Compare cuts: two or more analysed cuts on one time axis, which cut wins for which audience, and why."""

from __future__ import annotations

import altair as alt
import streamlit as st

from app import services
from app.components import auth
from app.components.clip_upload import load_report
from facecast.clips.compare import (
    best_per_group,
    differences,
    divergent_moments,
    lead_margin,
    model_mismatch,
    overlaid_curves,
)

auth.require("clips.compare")
st.title("Compare cuts")
st.caption("Pick two or more analysed cuts (analyse them on **Analyze clips** first). Nothing is recomputed.")
store, past = services.store_and_past_analyses()

past = past[past["faces_found"]] if not past.empty else past
if len(past) < 2:
    st.info(
        "Comparing needs at least two analysed cuts with faces in them; "
        f"{len(past)} {'is' if len(past) == 1 else 'are'} stored so far.",
        icon=":material/compare:",
    )
    st.stop()

labels = {int(row.id): f"{row.name} (analysis {row.id})" for row in past.itertuples()}
with st.form("compare", border=False):
    chosen = st.multiselect(
        "Cuts",
        options=list(labels),
        format_func=labels.get,
        default=st.session_state.get("compare.chosen", list(labels)[:2]),
        placeholder="Pick two or more cuts",
    )
    st.form_submit_button("Compare", type="primary")
st.session_state["compare.chosen"] = chosen
if len(chosen) < 2:
    st.info("Pick at least two cuts.")
    st.stop()

cuts = {}
for analysis_id in chosen:
    report = load_report(store, analysis_id)
    if report is not None:
        name = report.clip.name if report.clip.name not in cuts else f"{report.clip.name} ({analysis_id})"
        cuts[name] = report

mismatch = model_mismatch(cuts)
if mismatch:
    st.warning(f"**Not comparable.** {mismatch}", icon=":material/model_training:")
else:
    model = next(iter(cuts.values()))
    st.caption(f"Scored by engagement model version {model.engagement_version}: {model.engagement_model_description}.")

curves = overlaid_curves(cuts)
hover = alt.selection_point(on="pointerover", nearest=True, fields=["time"], empty=False)
legend = alt.selection_point(fields=["cut"], bind="legend")
lines = (
    alt.Chart(curves)
    .mark_line(point=True)
    .encode(
        x=alt.X("time:Q", title="time (s)"),
        y=alt.Y("engagement:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("cut:N", legend=alt.Legend(orient="top", title=None)),
        opacity=alt.condition(legend, alt.value(1.0), alt.value(0.15)),
        tooltip=[
            "cut",
            "second",
            alt.Tooltip("engagement:Q", format=".2f"),
            alt.Tooltip("low:Q", format=".2f"),
            alt.Tooltip("high:Q", format=".2f"),
        ],
    )
    .add_params(hover, legend)
)
rule = (
    alt.Chart(curves)
    .mark_rule(color="#444")
    .encode(x="time:Q", opacity=alt.condition(hover, alt.value(0.7), alt.value(0)))
)
st.altair_chart((lines + rule).properties(height=280, title="Engagement per second, cuts overlaid"), width="stretch")

left, right = st.columns([3, 1])
left.markdown("**Differences per score and audience group**")
left.table(differences(cuts).set_index("score"))
margin = lead_margin(cuts)
left.caption(
    (
        "**clear?** Engagement: when the lead is larger than the model's error on the difference between two cuts "
        "in 9 cases out of 10 (a calibrated margin). Other scores: when the cuts' 90 % intervals do not overlap, a "
        "stricter rule."
    )
    if margin is not None
    else (
        "**clear?** when the cuts' 90 % intervals do not overlap (some of these analyses predate the calibrated margin "
        "for engagement leads; analyse them again for it)."
    )
)
right.markdown("**Predicted best cut**")
right.table(best_per_group(cuts).set_index("audience"))

st.markdown("**Moments that explain the difference** — the seconds where the curves part the most")
for divergence in divergent_moments(cuts):
    values = ", ".join(f"{cut} {value:.2f}" for cut, value in divergence.values.items())
    st.markdown(f"- **{divergence.second:.0f} s** ({values})  \n  " + "  \n  ".join(divergence.moments))
