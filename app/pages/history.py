"""History: every stored analysis, newest first; reopening one reads the stored report (nothing is recomputed).
Analyses scored by another engagement model than the active one can be re-scored from their stored faces."""

from __future__ import annotations

import streamlit as st

from app import services
from app.components import auth
from app.components.clip_upload import load_report
from app.components.report_view import show_report
from facecast.clips.history import history_csv, history_table, spreadsheet_safe_table
from facecast.clips.rescore import CannotRescore, rescore
from facecast.serving.errors import TritonError


def rescore_analyses(store, ids: list[int], engagement_model: dict, by: str) -> tuple[list[int], list[str]]:
    """Re-score stored analyses with the active engagement model; returns the new analyses' ids and the problems."""
    from app.components.banners import triton_down

    scorer = services.analyzer().scorer
    done, problems = [], []
    with st.spinner(f"Re-scoring {len(ids)} analys{'is' if len(ids) == 1 else 'es'}"):
        for analysis_id in ids:
            stored = store.analyses.get(analysis_id)
            if stored is None:
                continue
            try:
                analysis = rescore(stored, store.analyses.faces(analysis_id), scorer, engagement_model)
            except CannotRescore as error:
                problems.append(str(error))
                continue
            except TritonError as error:
                triton_down(error)
            done.append(store.analyses.add(analysis.record(analysed_by=by)))
    return done, problems


person = auth.require("clips.history")
st.title("History")
store, past = services.store_and_past_analyses()

if past.empty:
    st.info("No clip has been analysed yet: analyse one on the **Analyze clips** page.", icon=":material/history:")
    st.stop()

table = spreadsheet_safe_table(history_table(past))
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        c: st.column_config.NumberColumn(format="%.2f")
        for c in ("engagement", "low", "high", "resonance", "shareability", "seconds")
    },
)

st.download_button(
    "Download table (CSV)",
    data=history_csv(past),
    file_name="facecast-history.csv",
    mime="text/csv",
    help="Names a spreadsheet would run as formulas (starting with =, +, -, @) are written as text.",
)

active = store.engagement_models.active()
# a clip needs re-scoring when none of its analyses was made by the active version (the newest of them is re-scored)
current = set(past.loc[past["engagement_version"] == active.version, "content_sha256"])
outdated = past[past["faces_found"] & ~past["content_sha256"].isin(current)].drop_duplicates("content_sha256")
if not outdated.empty:
    st.info(
        f"**{len(outdated)} clip{' was' if len(outdated) == 1 else 's were'} scored by another engagement model** "
        f"than the active one (v{active.version}: {active.description}). Re-scoring reads their stored faces and "
        "runs only the engagement model: no clip is decoded again.",
        icon=":material/model_training:",
    )
    if st.button(f"Re-score {len(outdated)} with v{active.version}", key="rescore-all"):
        rescored, problems = rescore_analyses(store, [int(i) for i in outdated["id"]], active.provenance, person.name)
        for problem in problems:
            st.warning(problem)
        if rescored:
            st.success(f"Re-scored {len(rescored)}: new analyses {', '.join(map(str, rescored))}.")
        if not problems:
            st.rerun()  # the table above is read again and lists the new analyses

labels = {int(row.id): f"{row.id} · {row.name} · {row.created_at:%Y-%m-%d %H:%M}" for row in past.itertuples()}
chosen = st.selectbox(
    "Open an analysis",
    options=list(labels),
    format_func=labels.get,
    index=None,
    placeholder="Pick an analysis to reopen",
)
if chosen is not None:
    report = load_report(store, chosen)
    if report is None:
        st.warning(f"Analysis {chosen} is no longer in the database.")
    else:
        if report.faces_found and report.engagement_version != active.version:
            if st.button(f"Re-score with the active model (v{active.version}: {active.description})", key="rescore"):
                rescored, problems = rescore_analyses(store, [chosen], active.provenance, person.name)
                for problem in problems:
                    st.warning(problem)
                if rescored:
                    st.success(f"Re-scored as analysis {rescored[0]}.")
                    report, chosen = load_report(store, rescored[0]), rescored[0]
        show_report(report, chosen, key=f"history-{chosen}")
