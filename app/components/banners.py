"""The one way every page says the model server is down or the store cannot be opened: a banner with the reason
(and, for the server, a retry that drops the cached clients), then the page stops. Never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import streamlit as st

from app import services

TRITON_DOWN = "The model server is not available."
STORE_DOWN = "The database cannot be opened."


def triton_down(error: Exception, what: str = TRITON_DOWN, *, forget: Callable[[], None] | None = None) -> NoReturn:
    """`forget` drops a page's own cached clients too (the app-wide ones are always dropped on retry)."""
    st.error(f"**{what}** {error}", icon=":material/cloud_off:")
    if st.button("Retry", type="primary", key=f"retry-{what}"):
        services.forget_triton()
        if forget is not None:
            forget()
        st.rerun()
    st.stop()


def store_unavailable(error: Exception, what: str = STORE_DOWN) -> NoReturn:
    st.error(f"**{what}** {error}", icon=":material/database:")
    st.stop()
