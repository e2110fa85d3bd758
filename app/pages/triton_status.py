"""Triton status: is the model server up, which models does it serve, and with which batching settings."""

from __future__ import annotations

import pandas as pd
import requests
import streamlit as st

from app import services
from facecast.triton_server import server_status

st.title("Triton status")
settings = services.settings()
status = server_status(settings)

if not status["live"]:
    st.error(f"**No Triton server answers at {status['url']}.** Start it with `facecast serve --detach` "
             "(or `make run`).", icon=":material/cloud_off:")
    if st.button("Check again", type="primary"):
        st.rerun()
    st.stop()

left, middle, right = st.columns(3)
left.metric("Server", "ready" if status["ready"] else "not ready")
middle.metric("Version", status.get("server_version", "?"))
right.metric("Models", len(status["models"]))
st.caption(f"Endpoint {status['url']}" + (f" · pid {status['process']['pid']}" if "process" in status else ""))


def model_settings(name: str) -> dict:
    """Batching and instance settings from the served config (the numbers behind them: docs/benchmarks.md)."""
    try:
        config = requests.get(f"{status['url']}/v2/models/{name}/config", timeout=5).json()
    except (requests.RequestException, ValueError):
        return {}
    batching = config.get("dynamic_batching")
    return {
        "max batch": config.get("max_batch_size"),
        "dynamic batching": "on" if batching is not None else "off",
        "queue delay µs": int(batching.get("max_queue_delay_microseconds", 0)) if batching else None,
        "instances": sum(int(g.get("count", 1)) for g in config.get("instance_group", [])),
        "backend": config.get("backend") or config.get("platform"),
    }


rows = [{"model": m["name"], "version": m.get("version", ""), "state": m.get("state", ""),
         **model_settings(m["name"]), "reason": m.get("reason", "")} for m in status["models"]]
st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
if st.button("Refresh"):
    st.rerun()
