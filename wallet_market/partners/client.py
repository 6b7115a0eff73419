"""Outbound HTTP to partners: pooled sessions, signed requests, deadlines, a shared breaker, metrics.

One ``requests.Session`` per partner keeps its connections warm. Every request
is signed with the partner's secret (the ``X-Partner-Id`` / ``X-Timestamp`` /
``X-Signature`` scheme of :mod:`.signing`; a GET signs the empty body), bounded
by a deadline, and guarded by a circuit breaker (pybreaker) whose state lives
in Redis under ``keys.partner_breaker(partner)``, so every worker of every
machine agrees on it. A failed call never raises: it becomes a
:class:`PartnerResult` whose ``outcome`` says what went wrong.
"""
from __future__ import annotations

import logging
import threading
from http.cookiejar import DefaultCookiePolicy
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar

import orjson
import pybreaker
import redis
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from .. import metrics
from ..domain.catalogue import Partner
from ..domain.signing import signed_headers
from ..quiet_logs import RepeatLimiter, quiet_library_logger

log = logging.getLogger(__name__)
# One line per kind of failure and interval: a partner (or Redis) down fails every call alike.
_quiet = RepeatLimiter(log)
T = TypeVar("T")

OK = "ok"
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
HTTP_ERROR = "http_error"
BAD_ANSWER = "bad_answer"
BREAKER_OPEN = "breaker_open"
NO_SECRET = "no_secret"
OUTCOMES = (OK, TIMEOUT, UNREACHABLE, HTTP_ERROR, BAD_ANSWER, BREAKER_OPEN, NO_SECRET)

DEFAULT_MAX_BYTES = 64 * 1024
USER_AGENT = "wallet-market-partner-gateway/1"


class BadAnswer(ValueError):
    """The partner answered, but not with something we can use (raised by ``read`` callables)."""


@dataclass(frozen=True, slots=True)
class PartnerResponse:
    """A partner's complete answer, as handed to a ``read`` callable."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; :class:`BadAnswer` when it is not."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise BadAnswer("the answer is not JSON") from None

    def text(self) -> str:
        """The body as UTF-8 text; :class:`BadAnswer` when it is not."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadAnswer("the answer is not UTF-8 text") from None


@dataclass(frozen=True, slots=True)
class PartnerResult(Generic[T]):
    """What came of one call: ``value`` (what ``read`` made of the answer) when ``outcome`` is ``ok``."""

    partner_id: str
    purpose: str
    outcome: str
    status: int | None = None
    value: T | None = None
    elapsed_seconds: float = 0.0
    detail: str = ""
    sent: bool = True

    @property
    def ok(self) -> bool:
        return self.outcome == OK


def _causes(exc: BaseException):
    """``exc`` and what it wraps: urllib3's ``reason``, the ``__cause__`` chain, an exception argument."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "reason", None)
        if not isinstance(wrapped, BaseException):
            wrapped = current.__cause__ or current.__context__
        if wrapped is None and current.args and isinstance(current.args[0], BaseException):
            wrapped = current.args[0]
        current = wrapped


def why_unreachable(exc: BaseException) -> str:
    """Why a connection failed, as a person says it: refused, a DNS lookup that failed, a timeout, TLS."""
    import socket
    import ssl

    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return f"DNS lookup failed: {cause.strerror or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing listens on that host and port)"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the partner"
        if isinstance(cause, (TimeoutError, socket.timeout)):
            return "timeout: the connection was not established"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {getattr(cause, 'reason', None) or cause}"
        if isinstance(cause, OSError) and cause.strerror:
            return f"connection failed: {cause.strerror}"
    return f"connection failed: {type(exc).__name__}"


class _Failure(Exception):
    """A failed exchange; raised inside the breaker so that it counts, then turned into a result."""

    def __init__(self, outcome: str, detail: str, status: int | None = None):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.status = status


BreakerStorageFactory = Callable[[str], pybreaker.CircuitBreakerStorage]


def memory_breaker_storage() -> BreakerStorageFactory:
    """Breaker state in this process only (a single-process tool such as the onboarding check)."""
    return lambda partner_id: pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)


class _BreakerMetrics(pybreaker.CircuitBreakerListener):
    def state_change(self, cb, old_state, new_state) -> None:
        metrics.PARTNER_BREAKER_OPEN.labels(cb.name).set(1 if new_state.name == pybreaker.STATE_OPEN else 0)
        _quiet.warning(
            "partner %s circuit breaker %s -> %s", cb.name, old_state.name if old_state else "-", new_state.name,
            key=("breaker", cb.name, new_state.name),
        )


class PartnerSecrets:
    """Partner signing secrets, read from the catalogue store and kept for ``ttl_seconds``."""

    def __init__(self, read: Callable[[], Mapping[str, str]], ttl_seconds: float = 30.0):
        self._read = read
        self.ttl_seconds = ttl_seconds
        self._secrets: Mapping[str, str] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, partner_id: str) -> str | None:
        if time.monotonic() - self._read_at > self.ttl_seconds:
            with self._lock:
                if time.monotonic() - self._read_at > self.ttl_seconds:
                    try:
                        self._secrets = dict(self._read())
                        self._read_at = time.monotonic()
                    except redis.RedisError:
                        _quiet.warning("partner secrets unreadable; using the last ones read")
        return self._secrets.get(partner_id)


class PartnerClient:
    """Signed, deadline-bound, breaker-guarded HTTP calls to partners."""

    def __init__(
        self,
        secrets: Callable[[str], str | None],
        breaker_storage: BreakerStorageFactory,
        *,
        fail_max: int,
        reset_seconds: float,
        pool_size: int = 16,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ):
        self.secrets = secrets
        self.fail_max = fail_max
        self.reset_seconds = reset_seconds
        self.pool_size = pool_size
        self._breaker_storage = breaker_storage
        self._session_factory = session_factory
        self._sessions: dict[str, requests.Session] = {}
        self._storages: dict[str, pybreaker.CircuitBreakerStorage] = {}
        self._listener = _BreakerMetrics()
        self._lock = threading.Lock()
        # pybreaker logs a traceback for each breaker read while Redis is down: one per interval is enough.
        quiet_library_logger("pybreaker")

    # -- connections and breakers ------------------------------------------
    def session(self, partner_id: str) -> requests.Session:
        """The pooled session of ``partner_id`` (created on first use)."""
        session = self._sessions.get(partner_id)
        if session is None:
            with self._lock:
                session = self._sessions.get(partner_id)
                if session is None:
                    session = self._session_factory()
                    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_size, max_retries=0)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    session.headers["User-Agent"] = USER_AGENT
                    # One session serves every user's requests: nothing a partner sets may ride along.
                    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
                    self._sessions[partner_id] = session
        return session

    def _storage(self, partner_id: str) -> pybreaker.CircuitBreakerStorage | None:
        storage = self._storages.get(partner_id)
        if storage is None:
            try:
                storage = self._breaker_storage(partner_id)
            except redis.RedisError:
                return None  # Redis is away: no breaker this time, the deadline still holds
            self._storages[partner_id] = storage
        return storage

    def breaker(self, partner_id: str) -> pybreaker.CircuitBreaker | None:
        """A breaker object over the partner's shared state.

        A fresh object per call: pybreaker holds its object's lock for the whole
        guarded call, so one object per partner would send that partner's
        requests one at a time. The state itself is shared through the storage.
        """
        storage = self._storage(partner_id)
        if storage is None:
            return None
        return pybreaker.CircuitBreaker(
            fail_max=self.fail_max,
            reset_timeout=self.reset_seconds,
            state_storage=storage,
            listeners=[self._listener],
            name=partner_id,
            throw_new_error_on_trip=False,
        )

    def breaker_state(self, partner_id: str) -> str:
        """``closed``, ``open`` or ``half-open``, as every worker sees it."""
        storage = self._storage(partner_id)
        return storage.state if storage is not None else pybreaker.STATE_CLOSED

    def breaker_open(self, partner_id: str) -> bool:
        """Whether the partner's breaker refuses calls right now (open, and not yet due for a trial)."""
        storage = self._storage(partner_id)
        if storage is None:
            return False
        is_open = storage.state == pybreaker.STATE_OPEN
        metrics.PARTNER_BREAKER_OPEN.labels(partner_id).set(1 if is_open else 0)
        if not is_open:
            return False
        opened_at = storage.opened_at
        return opened_at is not None and time.time() < opened_at.timestamp() + self.reset_seconds

    # -- calls ---------------------------------------------------------------
    def call(
        self,
        partner: Partner,
        purpose: str,
        method: str,
        url: str,
        *,
        payload: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        read: Callable[[PartnerResponse], T] | None = None,
        timeout_seconds: float | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        use_breaker: bool = True,
        allow_redirects: bool = False,
        accept_status: Callable[[int], bool] | None = None,
    ) -> PartnerResult[T]:
        """Send one signed request to ``partner`` and read its answer.

        ``payload`` is sent as the JSON body; ``read`` turns a 2xx answer into
        the result's value and raises :class:`BadAnswer` when it cannot. The
        partner's ``timeout_ms`` bounds the whole exchange unless
        ``timeout_seconds`` says otherwise. ``accept_status`` decides which
        statuses count as answers (default: 2xx). Timeouts, connection errors,
        refused statuses and bad answers all count against the breaker.
        """
        partner_id = partner.partner_id
        secret = self.secrets(partner_id)
        if not secret:
            return self._finish(partner_id, purpose, NO_SECRET, detail="no signing secret configured", sent=False)
        body = orjson.dumps(payload) if payload is not None else b""
        timeout = timeout_seconds if timeout_seconds is not None else partner.timeout_ms / 1000
        accept = accept_status or (lambda status: 200 <= status < 300)
        started = time.perf_counter()

        def exchange() -> tuple[int, Any]:
            headers = signed_headers(partner_id, secret, body)
            if payload is not None:
                headers["Content-Type"] = "application/json"
            response = self._send(
                self.session(partner_id), method, url, body, headers, params, timeout, max_bytes, allow_redirects
            )
            if not accept(response.status):
                raise _Failure(HTTP_ERROR, f"HTTP {response.status}", response.status)
            try:
                value = read(response) if read is not None else response
            except BadAnswer as exc:
                raise _Failure(BAD_ANSWER, str(exc), response.status) from None
            return response.status, value

        breaker = self.breaker(partner_id) if use_breaker else None
        try:
            status, value = breaker.call(exchange) if breaker is not None else exchange()
        except pybreaker.CircuitBreakerError:
            return self._finish(partner_id, purpose, BREAKER_OPEN, detail="circuit breaker open", sent=False)
        except _Failure as failure:
            return self._finish(
                partner_id, purpose, failure.outcome, failure.status, detail=failure.detail,
                elapsed=time.perf_counter() - started,
            )
        return self._finish(partner_id, purpose, OK, status, value=value, elapsed=time.perf_counter() - started)

    @staticmethod
    def _send(session, method, url, body, headers, params, timeout, max_bytes, allow_redirects) -> PartnerResponse:
        deadline = time.monotonic() + timeout
        try:
            with session.request(
                method,
                url,
                data=body or None,
                headers=headers,
                params=params,
                timeout=(timeout, timeout),
                stream=True,
                allow_redirects=allow_redirects,
            ) as response:
                chunks: list[bytes] = []
                size = 0
                # A partner that trickles its answer byte by byte must not outlive its deadline.
                for chunk in response.iter_content(16384):
                    size += len(chunk)
                    if size > max_bytes:
                        raise _Failure(BAD_ANSWER, f"answer larger than {max_bytes} bytes", response.status_code)
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _Failure(TIMEOUT, f"answer not complete within {timeout:.3f}s", response.status_code)
                return PartnerResponse(response.status_code, dict(response.headers), b"".join(chunks))
        except requests.ConnectTimeout:
            raise _Failure(TIMEOUT, f"timeout: no connection within {timeout:.3f}s") from None
        except requests.Timeout:
            raise _Failure(TIMEOUT, f"timeout: no answer within {timeout:.3f}s") from None
        except requests.RequestException as exc:
            cause = exc.args[0] if exc.args else None
            if isinstance(cause, ReadTimeoutError) or time.monotonic() >= deadline:
                raise _Failure(TIMEOUT, f"timeout: no answer within {timeout:.3f}s") from None
            raise _Failure(UNREACHABLE, why_unreachable(exc)) from None

    @staticmethod
    def _finish(
        partner_id: str,
        purpose: str,
        outcome: str,
        status: int | None = None,
        *,
        value: Any = None,
        elapsed: float = 0.0,
        detail: str = "",
        sent: bool = True,
    ) -> PartnerResult:
        metrics.PARTNER_REQUESTS.labels(partner_id, purpose, outcome).inc()
        if sent:
            metrics.PARTNER_LATENCY.labels(partner_id, purpose, outcome).observe(elapsed)
        if outcome != OK:
            _quiet.info("partner %s %s: %s (%s)", partner_id, purpose, outcome, detail, key=(partner_id, purpose, outcome))
        return PartnerResult(
            partner_id=partner_id,
            purpose=purpose,
            outcome=outcome,
            status=status,
            value=value,
            elapsed_seconds=elapsed,
            detail=detail,
            sent=sent,
        )

    def close(self) -> None:
        """Close every partner's pooled connections."""
        with self._lock:
            sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session.close()
