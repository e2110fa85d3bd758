"""How healthy each Triton endpoint is right now, as this process's clients see it.

:class:`EndpointPool` is shared by every model client in the process: requests in flight per endpoint
(least-outstanding balancing), ejection with a doubling back-off after a connection-level failure, re-admission only
after a readiness check, and counters the Ops page shows. Which endpoints a deployment has is
facecast.serving.replicas.configured_urls.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from facecast.serving.health import is_ready

# Back-off after consecutive failures: 0.5, 1, 2, 4 ... s, at most 30 s between readiness checks of a dead endpoint.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
READY_CHECK_TIMEOUT_S = 1.0


def normalise_url(url: str) -> str:
    """ "http://host:port/" or "host:port" → "host:port" (what tritonclient.http expects)."""
    url = url.strip().rstrip("/")
    for scheme in ("http://", "https://"):
        url = url.removeprefix(scheme)
    if not url or ":" not in url or not url.rsplit(":", 1)[1].isdigit():
        raise ValueError(f"a Triton endpoint is host:port, got {url!r}")
    return url


@dataclass
class EndpointState:
    url: str
    in_flight: int = 0
    failures: int = 0  # consecutive connection-level failures; 0 = admitted
    ejected_until: float = 0.0  # monotonic time after which a readiness check may re-admit it
    checking: bool = False  # one thread at a time runs the readiness check
    requests: int = 0
    ok: int = 0
    failed: int = 0
    ejections: int = 0
    seconds: float = 0.0  # time spent in successful tries, for the mean latency the Ops page shows
    last_error: str = ""

    @property
    def admitted(self) -> bool:
        return self.failures == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "admitted": self.admitted,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "ejections": self.ejections,
            "mean_ms": round(1000 * self.seconds / self.ok, 2) if self.ok else None,
            "last_error": self.last_error,
        }


@dataclass
class EndpointPool:
    """Thread-safe. `choose` picks, `started` / `finished` bracket each try."""

    _states: dict[str, EndpointState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _turn: itertools.count = field(default_factory=itertools.count)

    def _state(self, url: str) -> EndpointState:
        state = self._states.get(url)
        if state is None:
            state = self._states[url] = EndpointState(url)
        return state

    def choose(self, urls: Iterable[str], exclude: set[str] = frozenset()) -> str | None:  # type: ignore[assignment]
        """The endpoint for the next try: an admitted one with the fewest requests in flight (ties take turns); else
        an ejected one whose back-off is over and that answers a readiness check; else, when nothing else is left,
        the ejected endpoint due soonest (a last try beats failing without one). None when all were tried."""
        candidates = [url for url in urls if url not in exclude]
        if not candidates:
            return None
        with self._lock:
            states = [self._state(url) for url in candidates]
            admitted = [state for state in states if state.admitted]
            if admitted:
                offset = next(self._turn)
                count = len(admitted)
                order = sorted(range(count), key=lambda i: (admitted[i].in_flight, (i - offset) % count))
                return admitted[order[0]].url
            now = time.monotonic()
            due = [state for state in states if state.ejected_until <= now and not state.checking]
            for state in due:
                state.checking = True
        for state in due:
            ready = is_ready(state.url, timeout=READY_CHECK_TIMEOUT_S)
            with self._lock:
                state.checking = False
                if ready:
                    state.failures = 0
                    return state.url
                self._back_off(state)
        with self._lock:
            return min(states, key=lambda state: state.ejected_until).url

    def started(self, url: str) -> None:
        with self._lock:
            state = self._state(url)
            state.in_flight += 1
            state.requests += 1

    def finished(self, url: str, *, ok: bool, seconds: float, error: str = "") -> None:
        with self._lock:
            state = self._state(url)
            state.in_flight -= 1
            if ok:
                state.ok += 1
                state.seconds += seconds
                state.failures = 0
                return
            state.failed += 1
            state.last_error = error
            if state.admitted:
                state.ejections += 1
            self._back_off(state)

    def _back_off(self, state: EndpointState) -> None:
        state.failures += 1
        state.ejected_until = time.monotonic() + min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (state.failures - 1))

    def snapshot(self) -> list[dict[str, object]]:
        """Every endpoint this process has talked to, as the client sees it (for the Ops page and status)."""
        with self._lock:
            return [state.as_dict() for state in self._states.values()]

    def forget(self) -> None:
        """Drop all state (tests; the app after its endpoints changed)."""
        with self._lock:
            self._states.clear()


DEFAULT_POOL = EndpointPool()
