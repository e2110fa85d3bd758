"""Long-lived resources of the app, created once per server process (st.cache_resource), never per rerun."""

from __future__ import annotations

import streamlit as st

from facecast.config import Settings, load_settings
from facecast.expressions import EXPRESSION_MODEL, ExpressionRecognizer
from facecast.store import Store, open_store
from facecast.triton_client import TritonModelClient


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def recognizer() -> ExpressionRecognizer:
    return ExpressionRecognizer(TritonModelClient(EXPRESSION_MODEL, settings().triton_url))


@st.cache_resource
def store() -> Store:
    return open_store(settings().db_path)


def forget_triton() -> None:
    """After Triton was down: drop the cached client so the next run re-reads the model's config."""
    recognizer.clear()
