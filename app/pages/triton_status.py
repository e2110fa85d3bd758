"""Ops: every Triton replica of the deployment (live, ready, what it serves with which batching settings), how each is
doing (its statistics API: requests, queue and compute time, batch sizes, failures), how traffic spreads over
them, how many replicas a peak needs, and a short load test over all of them (loopback only)."""

from __future__ import annotations

import math
import time
import urllib.error

import altair as alt
import pandas as pd
import streamlit as st

from app import services
from app.components import auth
from facecast.serving.client import DEFAULT_POOL
from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable
from facecast.serving.health import batching_settings, model_config, model_stats
from facecast.serving.load_test import MAX_CONCURRENCY, MAX_LOAD_SECONDS, is_loopback, load_test
from facecast.serving.replicas import deployment_status

# Traffic counts as evenly spread when every replica's share of requests is within this much of the mean share (the
# bound the chaos test holds the client pool to).
SPREAD_TOLERANCE = 0.25

auth.require("ops.status")
st.title("Triton status")
urls = services.triton_urls()
replicas = deployment_status(services.settings())["replicas"]
live = [r for r in replicas if r["live"]]

st.dataframe(
    pd.DataFrame(
        [
            {
                "endpoint": r["url"],
                "live": r["live"],
                "ready": r["ready"],
                "version": r.get("server_version", ""),
                "models ready": sum(m.get("state") == "READY" for m in r["models"]),
                "pid": r.get("pid"),
                "metrics": r.get("metrics_url") or "",
            }
            for r in replicas
        ]
    ),
    hide_index=True,
    width="stretch",
)
if not live:
    st.error(
        f"**No Triton server answers at {', '.join(r['url'] for r in replicas)}.** Start it with "
        "`facecast serve --detach` (or `make run`); several with `facecast serve --replicas 3 --detach`.",
        icon=":material/cloud_off:",
    )
    if st.button("Check again", type="primary"):
        st.rerun()
    st.stop()

left, middle, right = st.columns(3)
ready_count = sum(r["ready"] for r in replicas)
left.metric("Server", "ready" if ready_count == len(replicas) else f"{ready_count} of {len(replicas)} ready")
middle.metric("Replicas", len(replicas))
right.metric(
    "Models", len({m["name"] for m in live[0]["models"]})
)  # a calibrated engagement version is a row, not a model


def model_settings(url: str, name: str) -> dict:
    try:
        return batching_settings(model_config(url, name))
    except (urllib.error.URLError, OSError, ValueError):
        return {}


first = live[0]
rows = [
    {
        "model": m["name"],
        "version": m.get("version", ""),
        "state": m.get("state", ""),
        **model_settings(first["url"], m["name"]),
        "reason": m.get("reason", ""),
    }
    for m in first["models"]
]
st.subheader("Models")
st.caption(f"As served by {first['url']}; every replica serves the same repository.")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

# ---- traffic per replica ---------------------------------------------------------------------------------------------

st.subheader("Traffic")
per_model, per_batch, unreachable = [], [], []
for replica in live:
    try:
        model_rows, batch_rows = model_stats(replica["url"])
    except (urllib.error.URLError, OSError, ValueError) as error:
        unreachable.append(f"{replica['url']}: {error}")
        continue
    per_model += [{"replica": replica["url"], **row} for row in model_rows]
    per_batch += [{"replica": replica["url"], **row} for row in batch_rows]
for line in unreachable:
    st.warning(f"Triton's statistics API did not answer at {line}")
per_model_frame = pd.DataFrame(per_model)
per_batch_frame = pd.DataFrame(per_batch, columns=["replica", "model", "batch size", "executions"])

if not per_model_frame.empty:
    # Throughput: requests since the previous look at this page, per second (Triton's counters are cumulative).
    now = time.monotonic()
    previous = st.session_state.get("ops-previous")
    totals = per_model_frame.set_index(["replica", "model"])["requests"]
    per_model_frame["req/s since last refresh"] = None
    if previous is not None and now > previous[0]:
        earlier = previous[1].reindex(totals.index)
        rates = ((totals - earlier) / (now - previous[0])).round(1)
        per_model_frame["req/s since last refresh"] = rates.to_numpy()
    st.session_state["ops-previous"] = (now, totals)
    st.dataframe(per_model_frame, hide_index=True, width="stretch")

    served = per_model_frame[per_model_frame["requests"] > 0]
    left, right = st.columns(2)
    if not served.empty:
        times = served.melt(
            id_vars=["replica", "model"],
            value_vars=["queue ms/request", "compute ms/request"],
            var_name="time",
            value_name="ms",
        )
        left.altair_chart(
            alt.Chart(times)
            .mark_bar()
            .encode(
                y=alt.Y("model:N", title=None, axis=alt.Axis(labelOverlap=False)),
                x=alt.X("ms:Q", stack=True, title="mean ms per request"),
                color=alt.Color("time:N", legend=alt.Legend(orient="top", title=None)),
                row=alt.Row("replica:N", title=None),
                tooltip=["replica", "model", "time", alt.Tooltip("ms:Q", format=".2f")],
            )
            .properties(height=160, title="Queue and compute time per request"),
            width="stretch",
        )
        share = served.groupby("replica")["requests"].sum()
        spread = pd.DataFrame({"replica": share.index, "share": (share / share.sum()).to_numpy()})
        mean_share = 1 / len(live)
        spread["within ±25 % of the mean"] = (spread["share"] - mean_share).abs() <= SPREAD_TOLERANCE * mean_share
        right.altair_chart(
            alt.Chart(spread)
            .mark_bar()
            .encode(
                x=alt.X("share:Q", axis=alt.Axis(format="%"), title="share of all requests served"),
                y=alt.Y("replica:N", title=None),
                color=alt.Color("within ±25 % of the mean:N", legend=alt.Legend(orient="top")),
                tooltip=["replica", alt.Tooltip("share:Q", format=".1%")],
            )
            .properties(height=160, title="How traffic spreads over the replicas"),
            width="stretch",
        )
    if not per_batch_frame.empty:
        st.altair_chart(
            alt.Chart(per_batch_frame)
            .mark_bar()
            .encode(
                x=alt.X("batch size:O"),
                y=alt.Y("sum(executions):Q", title="executions"),
                color=alt.Color("model:N", legend=alt.Legend(orient="top", title=None, columns=4)),
                xOffset="model:N",
                tooltip=["replica", "model", "batch size", "executions"],
            )
            .properties(height=220, title="Batch sizes the dynamic batcher formed (all replicas)"),
            width="stretch",
        )
    if served.empty:
        st.caption("No requests served yet: run the load test below or analyse a clip.")

pool = pd.DataFrame(DEFAULT_POOL.snapshot())
if not pool.empty:
    with st.expander("This app's clients: requests per endpoint, ejections after failures"):
        st.dataframe(pool, hide_index=True, width="stretch")

# ---- capacity -------------------------------------------------------------------------------------------------------

st.subheader("How many replicas")
st.caption(
    "replicas = ⌈ peak requests/s ÷ one replica's throughput at the p95 latency you accept ⌉. One replica's "
    "throughput comes from Triton's own load generator (`make perf`, docs/benchmarks.md) on the hardware you run."
)
peak_col, capacity_col, result_col = st.columns(3)
peak = peak_col.number_input("Peak requests/s", min_value=1.0, value=200.0, step=10.0)
capacity = capacity_col.number_input("One replica's requests/s at your p95", min_value=1.0, value=100.0, step=10.0)
result_col.metric("Replicas needed", math.ceil(peak / capacity))

# ---- load test ------------------------------------------------------------------------------------------------------

st.subheader("Load test")
ready_models = sorted({m["name"] for r in live for m in r["models"] if m.get("state") == "READY"})
if not is_loopback(urls):
    st.caption(f"The load test only runs against servers on this machine; these are at {', '.join(urls)}.")
elif ready_models:
    with st.form("load", border=False):
        model_col, seconds_col, threads_col = st.columns(3)
        model = model_col.selectbox(
            "Model",
            ready_models,
            index=ready_models.index("expression_encoder") if "expression_encoder" in ready_models else 0,
        )
        seconds = seconds_col.slider("Seconds", 1.0, MAX_LOAD_SECONDS, 2.0, step=0.5)
        threads = threads_col.slider("Concurrent clients", 1, MAX_CONCURRENCY, 4)
        run = st.form_submit_button("Run load test", type="primary")
    if run:
        try:
            with st.spinner(f"{threads} clients sending single requests to {model} on {len(urls)} endpoint(s)…"):
                result = load_test(urls, model, seconds, threads)
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
            st.caption("Refresh to see how the replicas shared the requests and the batch sizes Triton formed.")
if st.button("Refresh"):
    st.rerun()
