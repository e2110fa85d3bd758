"""Calibrate: teach facecast a studio's real audience from past trailers and their metrics, see whether it helps,
activate it, roll it back.

The fine-tune runs in its own process (facecast.cli.jobs) so it survives this tab; the page reads its
progress. Every row of the metrics CSV is checked first, and nothing is saved or started while one is bad. A
calibrated model becomes a new version of the served engagement model but serves only once activated, and only if
its cross-validation on the studio's own clips beat the default.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app import services
from app.components import auth
from app.components.banners import store_unavailable
from app.components.clip_upload import CLIP_TYPES
from facecast.calibration.manifest import COLUMN_HELP, TEMPLATE_CSV, check_manifest, safe_file_name
from facecast.cli.jobs import STAGES as JOB_STAGES
from facecast.cli.jobs import JobRefused, JobStatus, list_jobs, read_job, start_job
from facecast.store import StoreError
from facecast.store.engagement_models import ModelCard, ModelNotActivatable

person = auth.require("engagement.calibrate")
st.title("Calibrate engagement")
try:
    store = services.store()
    models = store.engagement_models
    active = models.active()
except StoreError as error:
    store_unavailable(error)

st.caption(
    "facecast's default engagement model learned from synthetic clips whose audience response is a documented "
    "function (docs/engagement-ground-truth.md), not from a real audience. Give it your past trailers and their "
    "audience metrics and it learns your audience: it is checked on your own clips against the default first, and "
    "serves only when you activate it."
)

# ---- what serves now -------------------------------------------------------------------------------------------
serving, rollback = st.columns([3, 1])
serving.markdown(
    f"**Serving now:** engagement model v{active.version} — {active.description}"
    + (
        f" (activated by {active.activated_by}, {active.activated_at:%Y-%m-%d %H:%M} UTC)"
        if active.activated_at
        else ""
    )
)
previous = models.previous()
if previous is not None and rollback.button(f"Roll back to v{previous.version}", icon=":material/undo:"):
    models.activate(previous.version, person.name)
    st.toast(f"Engagement model v{previous.version} serves again")
    st.rerun()


def validation_view(card_validation: dict, key: str) -> None:
    """The cross-validation report: the verdict, the metrics as a chart and table, held-out predictions."""
    statement = card_validation.get("statement", "")
    (st.success if card_validation.get("activatable") else st.warning)(statement, icon=":material/fact_check:")
    rows = [
        {"measure": label, "model": model, "value": card_validation[side][field]}
        for field, label in (
            ("spearman", "Spearman with watch %"),
            ("class_accuracy", "class accuracy"),
            ("coverage", "90 % interval coverage"),
        )
        for side, model in (("default", "default (synthetic audience)"), ("calibrated", "calibrated on your clips"))
    ]
    table = pd.DataFrame(rows).pivot(index="measure", columns="model", values="value")
    st.dataframe(
        table.reindex([r["measure"] for r in rows[::2]])[[rows[0]["model"], rows[1]["model"]]],
        width="stretch",
        column_config={c: st.column_config.NumberColumn(format="%.2f") for c in table.columns},
    )
    clips = card_validation["per_clip"]
    st.markdown("**Each clip: what its audience watched, and what each model predicts without having seen it**")
    held_out = pd.DataFrame(
        {
            "watch % (observed)": [100 * v for v in clips["observed"]],
            "default (synthetic audience)": [100 * v for v in clips["default"]],
            "calibrated on your clips": [100 * v for v in clips["calibrated"]],
        }
    ).melt("watch % (observed)", var_name="model", value_name="predicted engagement %")
    st.altair_chart(
        alt.Chart(held_out)
        .mark_circle(size=60, opacity=0.8)
        .encode(
            x=alt.X("watch % (observed):Q", scale=alt.Scale(domain=[0, 100])),
            y=alt.Y("predicted engagement %:Q", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color(
                "model:N",
                sort=None,
                scale=alt.Scale(range=["#9aa0a6", "#e4572e"]),  # the default in grey, the studio's model in colour
                legend=alt.Legend(orient="top", title=None, labelLimit=400),
            ),
            tooltip=[
                "model",
                alt.Tooltip("watch % (observed):Q", format=".1f"),
                alt.Tooltip("predicted engagement %:Q", format=".1f"),
            ],
        )
        .properties(height=320),
        width="stretch",
    )
    st.caption(
        f"{card_validation['clips']} clips, {card_validation['folds']}-fold cross-validation: each clip is predicted "
        "by a calibration fitted without it. A model that ranks your clips as your audience did puts the dots on a "
        "rising line. Spearman gain (calibrated − default), 90 % bootstrap interval: "
        + " to ".join(f"{v:+.2f}" for v in card_validation["spearman_gain_interval"])
    )


def activate_button(card: ModelCard, key: str) -> None:
    if card.version == active.version:
        st.info(f"Version {card.version} is the serving model.", icon=":material/check_circle:")
        return
    if not card.activatable:
        return
    if st.button(f"Activate version {card.version}", type="primary", key=key, icon=":material/rocket_launch:"):
        try:
            models.activate(card.version, person.name)
        except ModelNotActivatable as error:
            st.error(str(error))
            return
        st.toast(f"Engagement model v{card.version} now serves every new analysis")
        st.rerun()


# ---- a running or finished job --------------------------------------------------------------------------------
jobs = list_jobs(services.settings())
latest: JobStatus | None = jobs[0] if jobs else None


@st.fragment(run_every=1.0)
def job_progress(folder) -> None:
    job = read_job(folder)
    if job.finished:
        st.rerun()  # the whole page: the result and the version list change
    st.markdown(f"**Calibration running** (started by {job.started_by})")
    st.progress(min(1.0, max(0.0, job.fraction)), text=f"{JOB_STAGES.get(job.stage, job.stage)}: {job.message}")


if latest is not None and latest.state == "running":
    job_progress(latest.folder)
elif latest is not None and not st.session_state.get("calibrate.dismissed") == latest.folder.name:
    with st.container(border=True):
        if latest.state == "done":
            version = latest.result.get("version")
            st.markdown(f"**Latest calibration: version {version}** — {latest.result.get('description', '')}")
            card = models.get(int(version)) if version is not None else None
            if card is not None and card.validation is not None:
                validation_view({**card.validation, "activatable": card.activatable}, key="latest")
                activate_button(card, key="activate-latest")
        else:
            st.error(
                f"**The calibration started by {latest.started_by} did not finish.** "
                + (latest.result.get("error") or latest.message),
                icon=":material/error:",
            )
        if st.button("Dismiss", key="dismiss"):
            st.session_state["calibrate.dismissed"] = latest.folder.name
            st.rerun()

# ---- start one --------------------------------------------------------------------------------------------------
st.subheader("Calibrate on your audience")
with st.expander("The metrics CSV: one row per past trailer"):
    st.table(pd.DataFrame({"column": list(COLUMN_HELP), "what": list(COLUMN_HELP.values())}).set_index("column"))
    st.download_button(
        "Download the template", TEMPLATE_CSV, file_name="facecast-audience-metrics.csv", mime="text/csv"
    )
    st.caption(
        "Targets: engagement = watch % / 100; resonance and shareability = the like and share rates as ranks within "
        "your clips; low / medium / high = thirds of your clips by watch %. At least 12 clips with faces are needed "
        "before a calibrated model can be activated; more clips give a clearer answer."
    )
running = latest is not None and latest.state == "running"
with st.form("calibrate", border=False):
    manifest = st.file_uploader("Metrics CSV", type=["csv"], key="manifest")
    uploads = st.file_uploader(
        "Clips named in it (not needed for clips already analysed: they are read from History)",
        type=CLIP_TYPES,
        accept_multiple_files=True,
        key="clips",
    )
    submitted = st.form_submit_button("Check and calibrate", type="primary", disabled=running)

if submitted:
    if manifest is None:
        st.info("Choose the metrics CSV first.")
    else:
        uploaded = {safe_file_name(u.name): u for u in uploads or []}
        try:
            analysed = set(store.analyses.newest(limit=None)["name"].astype(str))
        except StoreError as error:
            store_unavailable(error)

        def resolve(path: str) -> str | None:
            if safe_file_name(path) in uploaded:
                return "upload"
            return "history" if path in analysed else None

        checked = check_manifest(manifest.getvalue(), resolve)
        if not checked.ok:
            st.error(
                f"**{manifest.name} cannot be used: {len(checked.problems)} problem"
                f"{'s' if len(checked.problems) != 1 else ''}.** Nothing was saved or started; fix the CSV and "
                "upload it again.\n\n" + "\n".join(f"- {problem}" for problem in checked.problems[:50]),
                icon=":material/rule:",
            )
        else:
            try:
                job = start_job(
                    services.settings(),
                    manifest.getvalue(),
                    [(u.name, u) for u in uploaded.values()],
                    person.name,
                    services.triton_urls(),
                )
            except JobRefused as error:
                st.warning(str(error))
            else:
                st.session_state.pop("calibrate.dismissed", None)
                from_history = sum(source == "history" for source in checked.sources)
                st.toast(
                    f"Calibration started on {len(checked.frame)} clips ({from_history} from History)",
                    icon=":material/model_training:",
                )
                st.rerun()

# ---- every version -----------------------------------------------------------------------------------------------
st.subheader("Versions")
cards = models.all()
st.dataframe(
    pd.DataFrame(
        [
            {
                "version": c.version,
                "serving": "●" if c.version == active.version else "",
                "model": c.description,
                "created (UTC)": c.created_at,
                "by": c.created_by,
                "clips": c.training.get("clips_with_faces"),
                "held-out Spearman": (c.validation or {}).get("calibrated", {}).get("spearman"),
                "default's": (c.validation or {}).get("default", {}).get("spearman"),
                "may serve": "yes" if c.activatable else "no",
                "last activated by": c.activated_by,
            }
            for c in cards
        ]
    ),
    hide_index=True,
    width="stretch",
    column_config={
        "held-out Spearman": st.column_config.NumberColumn(format="%.2f"),
        "default's": st.column_config.NumberColumn(format="%.2f"),
    },
)
chosen = st.selectbox(
    "Model card",
    options=[c.version for c in cards],
    format_func=lambda v: f"v{v} — {next(c.description for c in cards if c.version == v)}",
    index=None,
    placeholder="Open a version's model card",
)
if chosen is not None:
    card = next(c for c in cards if c.version == chosen)
    made = f"{card.created_at:%Y-%m-%d %H:%M} UTC" if card.created_at else "unknown date"
    st.markdown(f"**Model card of version {card.version}** — made by {card.created_by} on {made}; training data:")
    st.json(card.training, expanded=False)
    if card.validation:
        validation_view({**card.validation, "activatable": card.activatable}, key=f"card-{card.version}")
    activate_button(card, key=f"activate-{card.version}")
