"""A circuit breaker per backend endpoint.

CLOSED: every call goes to the backend. After ``failure_threshold`` consecutive
transient failures the breaker OPENS: for ``recovery_timeout`` seconds no I/O is
attempted (the decorated function just runs and L1 keeps serving). Then it goes
HALF_OPEN and admits up to ``half_open_max_calls`` probes at once: one success
closes it, one failure opens it again for another ``recovery_timeout``.

The clock is monotonic. The lock only guards state transitions, never I/O, and
``allow()`` in the CLOSED state reads one attribute. Only backend failures are
recorded: the decorated function's own exceptions and cancellations never count.
Transitions are logged under ``cachekit.breaker`` with code E030 and counted.

This module imports nothing from cachekit but errors.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from cachekit.errors import ConfigurationError

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerConfig",
    "CircuitBreaker",
    "breaker_for",
    "breakers",
]

log = logging.getLogger("cachekit.breaker")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """Settings of a circuit breaker. ``enabled=False`` never opens it."""

    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    half_open_max_calls: int = 1
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.failure_threshold, int) or self.failure_threshold < 1:
            raise ConfigurationError(
                f"failure_threshold must be an integer >= 1, got {self.failure_threshold!r}."
            )
        if not isinstance(self.recovery_timeout, (int, float)) or self.recovery_timeout <= 0:
            raise ConfigurationError(
                f"recovery_timeout must be a number of seconds > 0, got {self.recovery_timeout!r}."
            )
        if not isinstance(self.half_open_max_calls, int) or self.half_open_max_calls < 1:
            raise ConfigurationError(
                f"half_open_max_calls must be an integer >= 1, got {self.half_open_max_calls!r}."
            )

    @classmethod
    def from_env(cls, environ: Any = None) -> BreakerConfig:
        """Defaults overridden by ``CACHEKIT_CIRCUIT_BREAKER_*`` variables."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        for name, var, conv in (
            ("failure_threshold", "CACHEKIT_CIRCUIT_BREAKER_FAILURE_THRESHOLD", int),
            ("recovery_timeout", "CACHEKIT_CIRCUIT_BREAKER_RECOVERY_TIMEOUT", float),
            ("half_open_max_calls", "CACHEKIT_CIRCUIT_BREAKER_HALF_OPEN_CALLS", int),
        ):
            raw = env.get(var, "").strip()
            if raw:
                try:
                    kwargs[name] = conv(raw)
                except ValueError:
                    raise ConfigurationError(
                        f"{var}={raw!r} is not a valid {conv.__name__}."
                    ) from None
        raw = env.get("CACHEKIT_CIRCUIT_BREAKER", "").strip().lower()
        if raw:
            if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ConfigurationError(
                    f"CACHEKIT_CIRCUIT_BREAKER={raw!r} must be one of true/false/1/0/on/off."
                )
            kwargs["enabled"] = raw in ("1", "true", "yes", "on")
        try:
            return cls(**kwargs)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"invalid circuit breaker environment: {exc.message}"
            ) from None


@dataclass
class CircuitBreaker:
    """The state machine. Shared by every function that uses the same endpoint."""

    endpoint: str
    config: BreakerConfig = field(default_factory=BreakerConfig)
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probes: int = 0
    transitions: dict[str, int] = field(
        default_factory=lambda: {"opened": 0, "half_opened": 0, "closed": 0}
    )
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        """May a backend call be made now? (True in CLOSED without taking the lock.)"""
        if self.state is CLOSED:
            return True
        with self._lock:
            if self.state is OPEN:
                if monotonic() - self.opened_at < self.config.recovery_timeout:
                    self.rejected += 1
                    return False
                self._to(HALF_OPEN)
                self.probes = 0
            if self.state is HALF_OPEN:
                if self.probes >= self.config.half_open_max_calls:
                    self.rejected += 1
                    return False
                self.probes += 1
            return True

    def success(self) -> None:
        if self.state is CLOSED:
            if self.failures:
                self.failures = 0
            return
        with self._lock:
            if self.state is HALF_OPEN:
                self.failures = 0
                self._to(CLOSED)

    def failure(self, exc: BaseException | None = None) -> None:
        if not self.config.enabled:
            return
        with self._lock:
            self.failures += 1
            if self.state is HALF_OPEN or (
                self.state is CLOSED and self.failures >= self.config.failure_threshold
            ):
                self.opened_at = monotonic()
                self._to(OPEN, exc)

    def release_probe(self) -> None:
        """A half-open probe ended without a verdict (e.g. cancelled): free its slot."""
        with self._lock:
            if self.state is HALF_OPEN and self.probes > 0:
                self.probes -= 1

    def reset(self) -> None:
        with self._lock:
            self.failures = 0
            self.probes = 0
            if self.state is not CLOSED:
                self._to(CLOSED)

    def _to(self, state: str, exc: BaseException | None = None) -> None:
        # Called with the lock held. Logging here is off the hit path by construction.
        previous, self.state = self.state, state
        key = {OPEN: "opened", HALF_OPEN: "half_opened", CLOSED: "closed"}[state]
        self.transitions[key] += 1
        if state is OPEN:
            log.warning(
                "[E030] circuit breaker for %s opened (%s -> open after %d consecutive "
                "failure(s)%s); calls run uncached for %.1fs",
                self.endpoint,
                previous,
                self.failures,
                f", last: {type(exc).__name__}" if exc is not None else "",
                self.config.recovery_timeout,
            )
        else:
            log.info("[E030] circuit breaker for %s: %s -> %s", self.endpoint, previous, state)

    def snapshot(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "state": self.state,
            "consecutive_failures": self.failures,
            "failure_threshold": self.config.failure_threshold,
            "recovery_timeout": self.config.recovery_timeout,
            "transitions": dict(self.transitions),
            "rejected_calls": self.rejected,
        }


_registry: dict[tuple[str, BreakerConfig], CircuitBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(endpoint: str, config: BreakerConfig | None = None) -> CircuitBreaker:
    """The breaker shared by every function using ``endpoint`` with ``config``."""
    cfg = config or BreakerConfig()
    key = (endpoint, cfg)
    found = _registry.get(key)
    if found is None:
        with _registry_lock:
            found = _registry.setdefault(key, CircuitBreaker(endpoint, cfg))
    return found


def breakers() -> list[CircuitBreaker]:
    return list(_registry.values())


def _after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for b in _registry.values():
        b._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
