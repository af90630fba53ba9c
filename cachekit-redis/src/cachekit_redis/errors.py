"""Turning redis-py exceptions into cachekit's.

Connection problems and timeouts become :class:`BackendUnavailableError` (a
``ConnectionError``): transient, they count towards the circuit breaker. Anything
else the server answers with (``OOM command not allowed``, ``READONLY``, a reply the
client cannot parse) becomes :class:`BackendError`: counted and logged, the call
fails open, but the breaker stays closed - the server is up.

Translation has no side effects: it returns the error. What a failure means for the
process is recorded by the caller: a node's breaker (cachekit_redis.nodes), and
``READONLY`` from a Sentinel master (:func:`master_demoted`), which resets every pool
of that service (``failover.failed``).
"""

from __future__ import annotations

from cachekit.errors import BackendError, BackendUnavailableError

__all__ = ["master_demoted", "translate"]


def master_demoted(exc: BaseException) -> bool:
    """redis-py's Sentinel connections turn READONLY into "The previous master is now a
    slave" (and reconnect): the master of this connection is a replica now."""
    import redis.exceptions as rx

    return isinstance(exc, rx.ConnectionError) and isinstance(exc.__context__, rx.ReadOnlyError)


def translate(exc: BaseException, endpoint: str, op: str) -> BackendError:
    import redis.exceptions as rx

    detail = f"{op} on {endpoint} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, rx.MaxConnectionsError):
        # A client-side limit (redis-py's Cluster pools do not block when full): the
        # server is fine, so this must not open the breaker.
        return BackendError(detail)
    if master_demoted(exc):
        # The server answered, like READONLY anywhere else: not a breaker failure.
        return BackendError(detail)
    unreachable = (rx.ConnectionError, rx.TimeoutError, OSError, TimeoutError)
    if isinstance(exc, unreachable):
        return BackendUnavailableError(detail)
    if isinstance(exc, rx.RedisClusterException) and isinstance(exc.__cause__, unreachable):
        # "Redis Cluster cannot be connected": no startup node answered.
        return BackendUnavailableError(detail)
    return BackendError(detail)
