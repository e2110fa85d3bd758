"""How healthy each Triton endpoint is right now, as this process's clients see it.

:class:`EndpointPool` is shared by every model client in the process: requests in flight per endpoint (requests take
turns, skipping a replica whose requests pile up), ejection with a doubling back-off after a connection-level
failure, re-admission only after a readiness check, and counters the Ops page shows. Which endpoints a deployment
has is facecast.serving.replicas.configured_urls.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from facecast.serving.health import is_ready

# Back-off after consecutive failures: 0.5, 1, 2, 4, 5, 5 ... s between readiness checks of an ejected endpoint. The
# cap bounds how long a replica that came back waits for traffic (local replicas restart in ~5 s); a check is one GET.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0
READY_CHECK_TIMEOUT_S = 1.0
PROBE_INTERVAL_S = 0.2
# How many more requests in flight than the least busy endpoint an endpoint may have and still get the next one.
IMBALANCE = 2


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
    readmissions: int = 0
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
            "readmissions": self.readmissions,
            "mean_ms": round(1000 * self.seconds / self.ok, 2) if self.ok else None,
            "last_error": self.last_error,
        }


class EndpointPool:
    """Thread-safe. `choose` picks, `started` / `finished` bracket each try. Ejected endpoints are checked for
    readiness by a background thread (alive only while some endpoint is ejected), never in a request's path."""

    def __init__(self) -> None:
        self._states: dict[str, EndpointState] = {}
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._prober: threading.Thread | None = None

    def _state(self, url: str) -> EndpointState:
        state = self._states.get(url)
        if state is None:
            state = self._states[url] = EndpointState(url)
        return state

    def choose(self, urls: Iterable[str], exclude: Iterable[str] = ()) -> str | None:
        """The endpoint for the next try: the admitted ones take turns, skipping any with IMBALANCE more requests in
        flight than the least busy; when every candidate is ejected, the one due back soonest (a last try beats
        failing without one). None when all were tried."""
        excluded = set(exclude)
        candidates = [url for url in urls if url not in excluded]
        if not candidates:
            return None
        with self._lock:
            states = [self._state(url) for url in candidates]
            admitted = [state for state in states if state.admitted]
            if not admitted:
                return min(states, key=lambda state: state.ejected_until).url
            # Round-robin over the admitted endpoints spreads requests evenly; one that has more in flight than the
            # least busy by over IMBALANCE (slow, or stalled without failing yet) is passed over until it catches up.
            least = min(state.in_flight for state in admitted)
            offset = next(self._turn)
            for i in range(len(admitted)):
                state = admitted[(offset + i) % len(admitted)]
                if state.in_flight <= least + IMBALANCE:
                    return state.url
            return admitted[offset % len(admitted)].url  # unreachable: the least busy always qualifies

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
                if not state.admitted:  # the last-resort try worked: it is back
                    state.failures = 0
                    state.readmissions += 1
                return
            state.failed += 1
            state.last_error = error
            if state.admitted:
                state.ejections += 1
            self._back_off(state)
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(target=self._probe_ejected, name="facecast-endpoint-probe", daemon=True)
                self._prober.start()

    def _back_off(self, state: EndpointState) -> None:
        state.failures += 1
        state.ejected_until = time.monotonic() + min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (state.failures - 1))

    def _probe_ejected(self) -> None:
        """Re-admit each ejected endpoint once its back-off is over and it answers a readiness check; back off
        further when it does not. Ends when no endpoint is ejected."""
        while True:
            with self._lock:
                ejected = [state for state in self._states.values() if not state.admitted]
                due = [state for state in ejected if state.ejected_until <= time.monotonic() and not state.checking]
                for state in due:
                    state.checking = True
            if not ejected:
                return
            for state in due:
                ready = is_ready(state.url, timeout=READY_CHECK_TIMEOUT_S)
                with self._lock:
                    state.checking = False
                    if state.admitted:
                        continue  # a last-resort try re-admitted it meanwhile
                    if ready:
                        state.failures = 0
                        state.readmissions += 1
                    else:
                        self._back_off(state)
            time.sleep(PROBE_INTERVAL_S)

    def has_answered(self, urls: Iterable[str]) -> bool:
        """Whether any of `urls` answered a request in this process: a server that did, and stopped answering, is
        most likely restarting, and worth waiting for; one that never did is most likely not started at all."""
        with self._lock:
            return any(self._state(url).ok > 0 for url in urls)

    def wait_for_admission(self, urls: Iterable[str], until: float) -> bool:
        """Block until one of `urls` is admitted again (the background readiness checks re-admit it) or the
        monotonic time `until`; True if one was."""
        urls = list(urls)
        while time.monotonic() < until:
            with self._lock:
                if any(self._state(url).admitted for url in urls):
                    return True
            time.sleep(min(PROBE_INTERVAL_S, max(0.0, until - time.monotonic())))
        return False

    def snapshot(self) -> list[dict[str, object]]:
        """Every endpoint this process has talked to, as the client sees it (for the Ops page and status)."""
        with self._lock:
            return [state.as_dict() for state in self._states.values()]

    def state(self, url: str) -> dict[str, object]:
        with self._lock:
            return self._state(normalise_url(url)).as_dict()


DEFAULT_POOL = EndpointPool()
