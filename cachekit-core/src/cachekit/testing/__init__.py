"""Conformance suites for third-party backends, serializers and encryptors.

Each suite is a plain class of ``test_*`` methods. Subclass it in your plugin's
tests under a name pytest collects (``Test...``), say how to build the object
under test, and every behaviour cachekit relies on is checked::

    from cachekit.testing import BackendConformance

    from cachekit_mybackend import MyBackend


    class TestMyBackend(BackendConformance):
        def make_backend(self):
            return MyBackend("mybackend://localhost/0")

The suites:

* :class:`BackendConformance` -- :class:`cachekit.protocols.Backend`
  (``make_backend``; optional ``close_backend``);
* :class:`AsyncBackendConformance` -- :class:`cachekit.protocols.AsyncBackend`
  (``make_backend`` may be ``async def``; each test runs its own event loop
  with :func:`asyncio.run`, so no pytest-asyncio is needed);
* :class:`SerializerConformance` -- :class:`cachekit.protocols.Serializer`
  (``make_serializer``; declare what the serializer handles with
  ``sample_values`` / ``unsupported_values``);
* :class:`EncryptorConformance` -- :class:`cachekit.protocols.Encryptor`
  (``make_encryptor``; optional ``make_other_encryptor`` holding another key).

The package does not import pytest: failures are plain :class:`AssertionError`
with a message that names the broken rule, and tests that do not apply (a
capability the object does not declare) raise :class:`unittest.SkipTest`,
which pytest and unittest both report as skipped. The classes work with
``unittest.TestCase`` as a second base class too.

Backend tests use keys under a fresh random prefix (``key_prefix`` followed by
a random token) and remove them afterwards, so a suite can run against a shared
server. Expiry is checked by polling against a generous deadline, never by
timing assertions.
"""

# The suites live in private modules: _backend (the two backend suites, whose shared
# rules are in _rules, each written once as a scenario that _scenarios drives on a sync
# or an async backend), _serializer and _encryptor. The public names are re-exported
# here, and only here.
from cachekit.testing._backend import AsyncBackendConformance, BackendConformance
from cachekit.testing._backend_checks import CAPABILITY_METHODS, KNOWN_CAPABILITIES
from cachekit.testing._encryptor import EncryptorConformance
from cachekit.testing._serializer import SerializerConformance

__all__ = [
    "CAPABILITY_METHODS",
    "KNOWN_CAPABILITIES",
    "AsyncBackendConformance",
    "BackendConformance",
    "EncryptorConformance",
    "SerializerConformance",
]
