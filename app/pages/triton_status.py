"""Ops: is the model server up, which models does it serve with which batching settings, how is it doing
(statistics API and /metrics), and a short load test against the local server."""

from __future__ import annotations

import urllib.error

import altair as alt
import pandas as pd
import streamlit as st

from app import services
from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable
from facecast.serving.health import batching_settings, metrics, model_config, model_stats
from facecast.serving.load_test import MAX_CONCURRENCY, MAX_LOAD_SECONDS, is_loopback, load_test
from facecast.serving.process import server_status

st.title("Triton status")
settings = services.settings()
status = server_status(settings)

st.dataframe(
    pd.DataFrame(
        [
            {
                "endpoint": status["url"],
                "live": status["live"],
                "ready": status["ready"],
                "metrics": f"http://{settings.host}:{settings.metrics_port}/metrics",
            }
        ]
    ),
    hide_index=True,
    width="stretch",
)
if not status["live"]:
    st.error(
        f"**No Triton server answers at {status['url']}.** Start it with `facecast serve --detach` (or `make run`).",
        icon=":material/cloud_off:",
    )
    if st.button("Check again", type="primary"):
        st.rerun()
    st.stop()

left, middle, right = st.columns(3)
left.metric("Server", "ready" if status["ready"] else "not ready")
middle.metric("Version", status.get("server_version", "?"))
right.metric("Models", len(status["models"]))
st.caption(f"Endpoint {status['url']}" + (f" · pid {status['process']['pid']}" if "process" in status else ""))


def model_settings(name: str) -> dict:
    try:
        return batching_settings(model_config(status["url"], name))
    except (urllib.error.URLError, OSError, ValueError):
        return {}


rows = [
    {
        "model": m["name"],
        "version": m.get("version", ""),
        "state": m.get("state", ""),
        **model_settings(m["name"]),
        "reason": m.get("reason", ""),
    }
    for m in status["models"]
]
st.subheader("Models")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

st.subheader("Traffic")
try:
    model_rows, batch_rows = model_stats(status["url"])
    per_model = pd.DataFrame(model_rows)
    per_batch = pd.DataFrame(batch_rows, columns=["model", "batch size", "executions"])
except (urllib.error.URLError, OSError, ValueError) as error:
    st.warning(f"Triton's statistics API did not answer: {error}")
    per_model, per_batch = pd.DataFrame(), pd.DataFrame()
if not per_model.empty:
    st.dataframe(per_model, hide_index=True, width="stretch")
    served = per_model[per_model["requests"] > 0]
    left, right = st.columns(2)
    if not served.empty:
        times = served.melt(
            id_vars="model", value_vars=["queue ms/request", "compute ms/request"], var_name="time", value_name="ms"
        )
        left.altair_chart(
            alt.Chart(times)
            .mark_bar()
            .encode(
                y=alt.Y("model:N", title=None, axis=alt.Axis(labelOverlap=False)),
                x=alt.X("ms:Q", stack=True, title="mean ms per request"),
                color=alt.Color("time:N", legend=alt.Legend(orient="top", title=None)),
                tooltip=["model", "time", alt.Tooltip("ms:Q", format=".2f")],
            )
            .properties(height=260, title="Queue and compute time per request"),
            width="stretch",
        )
    if not per_batch.empty:
        right.altair_chart(
            alt.Chart(per_batch)
            .mark_bar()
            .encode(
                x=alt.X("batch size:O"),
                y=alt.Y("executions:Q"),
                color=alt.Color("model:N", legend=alt.Legend(orient="top", title=None, columns=3)),
                xOffset="model:N",
                tooltip=["model", "batch size", "executions"],
            )
            .properties(height=260, title="Batch sizes the dynamic batcher formed"),
            width="stretch",
        )
    if served.empty:
        st.caption("No requests served yet: run the load test below or analyse a clip.")
try:
    prometheus = pd.DataFrame(
        metrics(f"http://{settings.host}:{settings.metrics_port}/metrics"),
        columns=["metric", "model", "version", "value"],
    )
except (urllib.error.URLError, OSError) as error:
    st.caption(f"The metrics port {settings.metrics_port} did not answer ({error.__class__.__name__}).")
else:
    counters = prometheus[
        prometheus["metric"].isin(
            [
                "nv_inference_count",
                "nv_inference_exec_count",
                "nv_inference_request_success",
                "nv_inference_queue_duration_us",
            ]
        )
    ]
    if not counters.empty:
        with st.expander("Prometheus /metrics (nv_*)"):
            st.dataframe(
                counters.pivot_table(index="model", columns="metric", values="value", aggfunc="sum"), width="stretch"
            )

st.subheader("Load test")
ready = [m["name"] for m in status["models"] if m.get("state") == "READY"]
if not is_loopback(settings):
    st.caption(f"The load test only runs against a server on this machine; this one is at {settings.host}.")
elif ready:
    with st.form("load", border=False):
        model_col, seconds_col, threads_col = st.columns(3)
        model = model_col.selectbox(
            "Model", ready, index=ready.index("expression_encoder") if "expression_encoder" in ready else 0
        )
        seconds = seconds_col.slider("Seconds", 1.0, MAX_LOAD_SECONDS, 2.0, step=0.5)
        threads = threads_col.slider("Concurrent clients", 1, MAX_CONCURRENCY, 4)
        run = st.form_submit_button("Run load test", type="primary")
    if run:
        try:
            with st.spinner(f"{threads} clients sending single requests to {model} for {seconds:.1f} s…"):
                result = load_test(settings, model, seconds, threads)
        except (TritonUnavailable, ModelUnavailable, InferenceFailed, ValueError) as error:
            st.error(f"**The load test could not run.** {error}")
        else:
            cols = st.columns(4)
            cols[0].metric("Throughput", f"{result.throughput_per_s:.0f} req/s")
            cols[1].metric("Latency p50", f"{result.p50_ms:.1f} ms")
            cols[2].metric("Latency p95", f"{result.p95_ms:.1f} ms")
            cols[3].metric(
                "Requests",
                f"{result.requests}",
                delta=f"{result.failures} failed" if result.failures else None,
                delta_color="inverse",
            )
            if result.first_error:
                st.warning(f"First error: {result.first_error}")
            st.caption("Refresh to see the batch sizes Triton formed from these requests.")
if st.button("Refresh"):
    st.rerun()
