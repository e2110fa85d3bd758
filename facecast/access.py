"""Who may do what in a shared deployment: roles from configuration, given to signed-in people by their e-mail
address or a group claim of their identity provider.

Roles and what each may do (an action is what a page or button needs):

* ``marketing``: analyse clips, compare cuts, read the history;
* ``marketing_lead``: what marketing may, and calibrate the engagement model on the studio's audience (activate a
  calibrated version, roll back);
* ``artist``: the expression library (search, add, feedback), style mapping, face classification;
* ``ops``: the Ops page and its load test, removing library items;
* ``admin``: everything.

The policy is a TOML file (``FACECAST_ACCESS_FILE``; docs/operations.md shows one)::

    [roles]
    admin = ["lead@studio.example"]
    marketing = ["@studio.example"]          # everyone whose address ends with @studio.example
    artist = ["group:artists"]               # everyone whose `groups` claim lists "artists"
    ops = ["ops@studio.example", "group:sre"]

    [session]
    group_claim = "groups"                   # which ID-token claim carries groups
    max_age_hours = 12                       # a sign-in older than this is asked again

Without sign-in (the embedded default: `make run` on loopback) the one local user has every role.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("marketing", "marketing_lead", "artist", "ops", "admin")
MARKETING = frozenset({"marketing", "marketing_lead", "admin"})
ACTIONS: dict[str, frozenset[str]] = {
    "clips.analyse": MARKETING,
    "clips.compare": MARKETING,
    "clips.history": MARKETING,
    "engagement.calibrate": frozenset({"marketing_lead", "admin"}),
    "library.search": frozenset({"artist", "admin"}),
    "library.add": frozenset({"artist", "admin"}),
    "library.remove": frozenset({"ops", "admin"}),
    "faces.classify": frozenset({"artist", "admin"}),
    "faces.map": frozenset({"artist", "admin"}),
    "ops.status": frozenset({"ops", "admin"}),
    "ops.load_test": frozenset({"ops", "admin"}),
}
# The local user of the embedded default; earlier versions stored the app's feedback under this profile name.
LOCAL_USER = "app"
DEFAULT_MAX_AGE_HOURS = 12.0


class AccessConfigError(ValueError):
    """The access policy file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Identity:
    """Who is asking: a signed-in person (from the ID token's claims) or the local user."""

    name: str  # e-mail address when the provider gives one, else the subject
    roles: frozenset[str]
    signed_in: bool = False

    def may(self, action: str) -> bool:
        if action not in ACTIONS:
            raise KeyError(f"unknown action {action!r}")
        return bool(self.roles & ACTIONS[action])


LOCAL = Identity(LOCAL_USER, frozenset(ROLES))


@dataclass(frozen=True)
class Policy:
    rules: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # role -> patterns
    group_claim: str = "groups"
    max_age_s: float = DEFAULT_MAX_AGE_HOURS * 3600

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AccessConfigError(f"{path}: access policy file not found (FACECAST_ACCESS_FILE)") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise AccessConfigError(f"{path}: not a readable TOML file ({error})") from None
        roles = document.get("roles", {})
        if not isinstance(roles, dict) or not roles:
            raise AccessConfigError(f"{path}: needs a [roles] table mapping {', '.join(ROLES)} to lists of people")
        rules: dict[str, tuple[str, ...]] = {}
        for role, patterns in roles.items():
            if role not in ROLES:
                raise AccessConfigError(f"{path}: unknown role {role!r}; roles are {', '.join(ROLES)}")
            if not isinstance(patterns, list) or not all(isinstance(p, str) and p.strip() for p in patterns):
                raise AccessConfigError(
                    f"{path}: roles.{role} must be a list of e-mail addresses, @domains or group:<name> entries"
                )
            rules[role] = tuple(p.strip().lower() for p in patterns)
        session = document.get("session", {})
        try:
            max_age_s = float(session.get("max_age_hours", DEFAULT_MAX_AGE_HOURS)) * 3600
        except (TypeError, ValueError):
            raise AccessConfigError(f"{path}: session.max_age_hours must be a number") from None
        return cls(rules, str(session.get("group_claim", "groups")), max_age_s)

    def identity(self, claims: Mapping[str, object]) -> Identity:
        """The roles a signed-in person has, from their ID token's claims."""
        email = str(claims.get("email") or "").strip().lower()
        name = email or str(claims.get("sub") or "").strip()
        groups = claims.get(self.group_claim) or []
        group_names = {
            str(g).strip().lower()
            for g in (groups if isinstance(groups, Iterable) and not isinstance(groups, str) else [groups])
        }
        roles = {
            role
            for role, patterns in self.rules.items()
            if any(_matches(pattern, email, group_names) for pattern in patterns)
        }
        return Identity(name, frozenset(roles), signed_in=True)

    def expired(self, claims: Mapping[str, object], now: float | None = None) -> bool:
        """The provider's ID token has expired, or the sign-in is older than the policy allows."""
        now = time.time() if now is None else now
        expires = _number(claims.get("exp"))
        issued = _number(claims.get("iat"))
        return (expires is not None and expires <= now) or (issued is not None and now - issued > self.max_age_s)


def _matches(pattern: str, email: str, groups: set[str]) -> bool:
    if pattern.startswith("group:"):
        return pattern.removeprefix("group:") in groups
    if pattern.startswith("@"):
        return bool(email) and email.endswith(pattern)
    return bool(email) and email == pattern


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def is_loopback_address(address: str | None) -> bool:
    """A server address only this machine can reach (Streamlit binds every interface when none is given)."""
    return (address or "") in ("127.0.0.1", "localhost", "::1") or (address or "").startswith("127.")
