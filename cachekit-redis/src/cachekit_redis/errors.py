"""Turning redis-py exceptions into cachekit's.

Connection problems and timeouts become :class:`BackendUnavailableError` (a
``ConnectionError``): transient, they count towards the circuit breaker. Anything
else the server answers with (``OOM command not allowed``, ``READONLY``, a reply the
client cannot parse) becomes :class:`BackendError`: counted and logged, the call
fails open, but the breaker stays closed - the server is up.
"""

from __future__ import annotations

from cachekit.errors import BackendError, BackendUnavailableError

__all__ = ["translate"]


def translate(exc: BaseException, endpoint: str, op: str) -> BackendError:
    import redis.exceptions as rx

    detail = f"{op} on {endpoint} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, (rx.ConnectionError, rx.TimeoutError, OSError, TimeoutError)):
        return BackendUnavailableError(detail)
    return BackendError(detail)
