"""Analyze clips: upload trailer cuts, get the predicted engagement with intervals, the curve and the key moments."""

from __future__ import annotations

import streamlit as st

from app import services
from app.components import auth
from app.components.banners import store_unavailable, triton_down
from app.components.clip_upload import CLIP_TYPES, analyse_upload, load_report
from app.components.report_view import show_report
from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable
from facecast.store import StoreError

person = auth.require("clips.analyse")
st.title("Analyze clips")
st.caption(
    "Predicted audience engagement of a clip from its characters' faces and expressions: scores with 90 % "
    "intervals, per audience group and per second. Clips analysed before are reopened, not recomputed."
)

try:
    analyzer = services.analyzer()
    store = services.store()
    # read at every run: another session may have activated or rolled back a calibrated model since
    engagement_model = store.engagement_models.active().provenance
    fingerprint = analyzer.fingerprint(engagement_model["version"])
except (TritonUnavailable, ModelUnavailable) as error:
    triton_down(error)
except StoreError as error:
    store_unavailable(error)

limit_mb = st.get_option("server.maxUploadSize")
with st.form("clips", border=False):
    uploads = st.file_uploader(
        "Clips",
        type=CLIP_TYPES,
        accept_multiple_files=True,
        help=f"MP4, MOV, WebM, MKV or GIF, up to {limit_mb} MB each. Faces should be at least about 40 px tall.",
    )
    submitted = st.form_submit_button("Analyze", type="primary")

if submitted:
    if not uploads:
        st.info("Choose one or more clips first.")
    else:
        shown, problems = [], []
        try:
            for upload in uploads:
                result = analyse_upload(
                    upload, analyzer, store, fingerprint, engagement_model=engagement_model, analysed_by=person.name
                )
                (problems if result.error else shown).append(result)
        except (TritonUnavailable, ModelUnavailable, InferenceFailed) as error:
            triton_down(error, "The analysis stopped: the model server is not available.")
            st.stop()
        except StoreError as error:
            st.error(f"**The report could not be stored.** {error}", icon=":material/database:")
        st.session_state["analyze.shown"] = [r.analysis_id for r in shown]
        st.session_state["analyze.problems"] = [(r.name, r.error) for r in problems]

for name, error in st.session_state.get("analyze.problems", []):
    st.error(f"**{name} cannot be analysed.** {error}", icon=":material/broken_image:")

shown_ids = st.session_state.get("analyze.shown", [])
if shown_ids:
    reports = [(i, load_report(store, i)) for i in shown_ids]
    reports = [(i, r) for i, r in reports if r is not None]
    if len(reports) > 1:
        st.caption("Compare these cuts side by side on the **Compare cuts** page.")
        tabs = st.tabs([r.clip.name for _, r in reports])
        for tab, (analysis_id, report) in zip(tabs, reports):
            with tab:
                show_report(report, analysis_id, key=f"analysis-{analysis_id}")
    else:
        for analysis_id, report in reports:
            show_report(report, analysis_id, key=f"analysis-{analysis_id}")
elif not submitted:
    # The first screen: the newest stored report (the demo's, on a fresh install) shows what the page gives, where an
    # empty form would show nothing; it is read from the store, never recomputed.
    try:
        newest = store.analyses.newest(limit=1)
    except StoreError as error:
        store_unavailable(error)
    if newest.empty:
        st.info(
            "Upload one or more clips and press **Analyze**. Past analyses are on the **History** page.",
            icon=":material/upload_file:",
        )
    else:
        latest = newest.iloc[0]
        st.info(
            "**Try it with your own cut:** upload it above and press **Analyze**. Below is the newest analysis in "
            f"this studio's store, *{latest['name']}* ({latest['created_at']:%Y-%m-%d %H:%M}"
            + (f", by {latest['analysed_by']}" if isinstance(latest["analysed_by"], str) else "")
            + "); every past one is on the **History** page.",
            icon=":material/upload_file:",
        )
        report = load_report(store, int(latest["id"]))
        if report is not None:
            show_report(report, int(latest["id"]), key=f"latest-{int(latest['id'])}")
