"""The backend suites: :class:`BackendConformance` and :class:`AsyncBackendConformance`.

Both inherit their rules from :class:`~cachekit.testing._rules._BackendRules`; each only
says how to open and close a backend and which driver performs a rule's steps (plain
calls, or awaited in a fresh event loop), plus the checks that differ between the two.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress

from cachekit.protocols import AsyncBackend, Backend
from cachekit.testing._backend_checks import _BACKEND_METHODS, _second_close_failed
from cachekit.testing._checks import _check, _check_protocol
from cachekit.testing._rules import _BackendRules, _Rule
from cachekit.testing._scenarios import _adrive, _drive


class BackendConformance(_BackendRules):
    """Checks a synchronous :class:`~cachekit.protocols.Backend`.

    Implement :meth:`make_backend`; override :meth:`close_backend` when closing
    takes more than ``backend.close()``. Example::

        from cachekit.backends.memory import MemoryBackend
        from cachekit.testing import BackendConformance

        class TestMemoryBackend(BackendConformance):
            def make_backend(self):
                return MemoryBackend()

    Class attributes tune the suite (each is documented where it is defined, and
    in docs/plugins.md): ``key_prefix``, ``short_ttl``, ``long_ttl``,
    ``expiry_deadline``, ``poll_interval``, ``large_value_size``, ``secret`` (a
    password the backend must never show) and ``concurrency``; ``sample_values()``
    and ``sample_keys()`` can be extended.
    """

    _is_async = False

    def make_backend(self) -> Backend:
        """Return a new, connected backend (called once per test)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_backend()")

    def close_backend(self, backend: Backend) -> None:
        """Release ``backend`` after a test (default: ``backend.close()``)."""
        backend.close()

    @contextmanager
    def _opened(self) -> Iterator[tuple[Backend, str]]:
        backend = self.make_backend()
        _check(backend is not None, "make_backend() returned None; return the backend to test")
        ns = self._namespace()
        try:
            yield backend, ns
        finally:
            with suppress(Exception):  # best effort: the keys sit under a random prefix
                backend.clear(ns)
            self.close_backend(backend)

    def _play(self, rule: _Rule) -> None:
        with self._opened() as (b, ns):
            steps = rule(b, ns)
            if steps is not None:
                _drive(b, steps)

    # -- shape --------------------------------------------------------------------

    def test_satisfies_the_backend_protocol(self) -> None:
        with self._opened() as (b, _):
            _check_protocol(b, _BACKEND_METHODS, "Backend", "make_backend()")
            for name in _BACKEND_METHODS:
                _check(
                    not inspect.iscoroutinefunction(getattr(b, name)),
                    f"{name}() is a coroutine function: test an async backend with "
                    "AsyncBackendConformance",
                )

    def test_close_can_be_called_twice(self) -> None:
        backend = self.make_backend()
        backend.close()
        try:
            self.close_backend(backend)
        except Exception as exc:
            _second_close_failed(exc)


# --- AsyncBackendConformance ----------------------------------------------------------


class AsyncBackendConformance(_BackendRules):
    """Checks an :class:`~cachekit.protocols.AsyncBackend`: the same rules as the sync suite.

    ``make_backend`` runs inside the test's event loop and may be ``async def``
    (clients that bind to a loop are created there). Example::

        from cachekit.backends.memory import AsyncMemoryBackend
        from cachekit.testing import AsyncBackendConformance

        class TestAsyncMemoryBackend(AsyncBackendConformance):
            def make_backend(self):
                return AsyncMemoryBackend()

    It is tuned with the same class attributes and methods as
    :class:`BackendConformance`; ``close_backend`` is ``async def`` here.
    """

    _is_async = True

    def make_backend(self) -> AsyncBackend | Awaitable[AsyncBackend]:
        """Return a new backend, or a coroutine producing one (called once per test)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_backend()")

    async def close_backend(self, backend: AsyncBackend) -> None:
        """Release ``backend`` after a test (default: ``await backend.close()``)."""
        await backend.close()

    async def _make(self) -> AsyncBackend:
        made = self.make_backend()
        backend = await made if inspect.isawaitable(made) else made
        _check(backend is not None, "make_backend() returned None; return the backend to test")
        _check(
            inspect.iscoroutinefunction(getattr(backend, "get", None)),
            f"make_backend() returned {backend!r}, whose get() is not async: "
            "use BackendConformance for a synchronous backend",
        )
        return backend

    def _run(self, body: Callable[[AsyncBackend, str], Awaitable[None]]) -> None:
        async def main() -> None:
            backend = await self._make()
            ns = self._namespace()
            try:
                await body(backend, ns)
            finally:
                with suppress(Exception):  # best effort: the keys sit under a random prefix
                    await backend.clear(ns)
                await self.close_backend(backend)

        asyncio.run(main())

    def _play(self, rule: _Rule) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            steps = rule(b, ns)
            if steps is not None:
                await _adrive(b, steps)

        self._run(body)

    # -- shape --------------------------------------------------------------------

    def test_satisfies_the_async_backend_protocol(self) -> None:
        async def body(b: AsyncBackend, ns: str) -> None:
            _check_protocol(b, _BACKEND_METHODS, "AsyncBackend", "make_backend()")
            for name in _BACKEND_METHODS:
                _check(
                    inspect.iscoroutinefunction(getattr(b, name)),
                    f"{name}() must be a coroutine function (async def)",
                )

        self._run(body)

    def test_close_can_be_called_twice(self) -> None:
        async def main() -> None:
            backend = await self._make()
            await backend.close()
            try:
                await self.close_backend(backend)
            except Exception as exc:
                _second_close_failed(exc)

        asyncio.run(main())
