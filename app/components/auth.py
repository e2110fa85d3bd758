"""Who is using this session, and what they may do (facecast.access): Streamlit's own sign-in (`st.login`, OpenID
Connect through Authlib) when the deployment configures it, the local user otherwise.

* No ``[auth]`` in Streamlit's secrets: the embedded default (`make run`), which must listen on loopback only. An app
  started on another address without sign-in refuses to run (anyone who reaches the port could delete library items).
* ``[auth]`` configured: every page asks to sign in first; roles come from ``FACECAST_ACCESS_FILE``; a sign-in older
  than the provider's ID token (or the policy's maximum age) is asked again; the sidebar says who is signed in and
  signs out.
"""

from __future__ import annotations

import os
from typing import NoReturn

import streamlit as st

from facecast.access import LOCAL, AccessConfigError, Identity, Policy, is_loopback_address


def auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return False


@st.cache_resource
def _policy(path: str | None) -> Policy:
    if not path:
        raise AccessConfigError("sign-in is configured but FACECAST_ACCESS_FILE is not: nobody would have a role")
    return Policy.load(path)


def identity(*, main: bool = False) -> Identity:
    """The session's identity; asks to sign in (and stops the page) when that is needed first. Worked out on every
    run, so an expired or withdrawn sign-in takes effect at the next click. `main`: called by app/main.py before it
    lists the pages, so a stop there must not leave Streamlit listing app/pages/ by itself."""
    global _MAIN
    _MAIN = main
    if not auth_configured():
        address = st.get_option("server.address")
        if not is_loopback_address(address):
            _refuse(
                f"This facecast app listens on {address or 'every network interface'} without sign-in, so anyone "
                "who can reach it could analyse, search and delete. Configure sign-in (an `[auth]` section in "
                "Streamlit's secrets and FACECAST_ACCESS_FILE: docs/operations.md) or listen on 127.0.0.1."
            )
        return LOCAL
    try:
        policy = _policy(os.environ.get("FACECAST_ACCESS_FILE"))
    except AccessConfigError as error:
        _refuse(str(error))
    if not st.user.is_logged_in:
        _sign_in_screen("Sign in to use facecast.")
    claims = st.user.to_dict()
    if policy.expired(claims):
        _sign_in_screen("Your session has expired: sign in again.", again=True)
    person = policy.identity(claims)
    if not person.roles:
        st.error(
            f"**Signed in as {person.name}, but no role is given to you** in this deployment's access policy. "
            "Ask an admin to add you as marketing, artist or ops.",
            icon=":material/lock:",
        )
        st.button("Sign out", on_click=st.logout)
        _stop()
    return person


def require(action: str) -> Identity:
    """Stop the page with a clear message unless the session may do `action`."""
    person = identity()
    if not person.may(action):
        st.error(
            f"**{person.name} may not do this here** ({action}): your roles are "
            f"{', '.join(sorted(person.roles)) or 'none'}.",
            icon=":material/lock:",
        )
        st.stop()
    return person


def sidebar(person: Identity) -> None:
    if not person.signed_in:
        return
    with st.sidebar:
        st.caption(f"Signed in as **{person.name}** ({', '.join(sorted(person.roles))})")
        st.button("Sign out", on_click=st.logout, key="sign-out")


def _sign_in_screen(message: str, *, again: bool = False) -> NoReturn:
    st.title("facecast")
    (st.warning if again else st.info)(message, icon=":material/login:")
    st.button("Sign in again" if again else "Sign in", type="primary", on_click=st.login)
    _stop()


def _refuse(message: str) -> NoReturn:
    st.error(f"**facecast will not run like this.** {message}", icon=":material/lock:")
    _stop()


_MAIN = False


def _stop() -> NoReturn:
    """Stop the run. From app/main.py, first tell Streamlit the app has no pages to offer: a script that stops before
    st.navigation would otherwise get Streamlit's automatic list of app/pages/ (each page checks again, but a person
    who may not use them should not see them listed)."""
    if _MAIN:
        st.navigation([st.Page(_nothing, title="facecast")], position="hidden")
    st.stop()


def _nothing() -> None:
    return None
