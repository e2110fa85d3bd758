"""History: every stored analysis, newest first; reopening one reads the stored report (nothing is recomputed)."""

from __future__ import annotations

import streamlit as st

from app import services
from app.components import auth
from app.components.clip_upload import load_report
from app.components.report_view import show_report
from facecast.clips.history import history_csv, history_table, spreadsheet_safe_table

auth.require("clips.history")
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
        show_report(report, chosen, key=f"history-{chosen}")
