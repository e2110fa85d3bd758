"""Long-lived resources of the app, created once per server process (st.cache_resource), never per rerun.

Clients are lazy (they read a model's config on first use), so creating them never fails when Triton is down; the
pages show app.components.banners on TritonError / StoreError and offer a retry instead of a traceback.
"""

from __future__ import annotations

import streamlit as st

from facecast.clients.embedders import Embedders
from facecast.clients.expression_encoder import ExpressionRecognizer
from facecast.clips.pipeline import ClipAnalyzer
from facecast.config import Settings, load_settings
from facecast.library import Library
from facecast.serving.replicas import configured_urls
from facecast.store import Store, open_store


@st.cache_resource
def settings() -> Settings:
    return load_settings()


def triton_urls() -> list[str]:
    """The deployment's endpoints (FACECAST_TRITON_URLS, the local replicas, or the single server); every client
    spreads its requests over them and survives one going away (facecast.serving.client)."""
    return configured_urls(settings())


@st.cache_resource
def recognizer() -> ExpressionRecognizer:
    return ExpressionRecognizer.for_urls(triton_urls())


@st.cache_resource
def analyzer() -> ClipAnalyzer:
    return ClipAnalyzer.for_urls(triton_urls())


@st.cache_resource
def store() -> Store:
    return open_store(settings().db_path)


@st.cache_resource
def library() -> Library:
    """The expression library over the app's store (one DuckDB connection) and its FAISS index."""
    return Library(store(), Embedders.for_urls(triton_urls()), use_gpu=False)


def store_and_past_analyses(limit: int = 500):
    """The store and its stored analyses, newest first; a database that cannot be opened stops the page with the
    store banner."""
    from app.components.banners import store_unavailable
    from facecast.store import StoreError

    try:
        opened = store()
        return opened, opened.analyses.newest(limit=limit)
    except StoreError as error:
        store_unavailable(error)


def forget_triton() -> None:
    """After Triton was down: drop the cached clients so the next run re-reads the models' configs."""
    recognizer.clear()
    analyzer.clear()
    library.clear()
