"""One smoke test through the decorator on the in-memory backend: the value stored is
an encrypted envelope under this package's key id, and never the plaintext. (The
Redis integration tests live elsewhere.)"""

from __future__ import annotations

from dict_backend import DictBackend

from cachekit import cache
from cachekit.backends.memory import MemoryBackend
from cachekit.envelope import FLAG_ENCRYPTED, read_header
from cachekit_crypto.keys import key_id_of

K1 = "cd" * 32


def test_cache_secure_stores_only_ciphertext(monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", K1)
    backend = MemoryBackend()
    calls = []

    @cache.secure(backend=backend)
    def card(user_id):
        calls.append(user_id)
        return {"card": "4111111111111111", "user": user_id}

    assert card(7) == {"card": "4111111111111111", "user": 7}
    assert card(7) == {"card": "4111111111111111", "user": 7}
    assert calls == [7]
    stored = [value for value, _expiry in backend._store.items.values()]
    assert len(stored) == 1
    header = read_header(stored[0])
    assert header.flags & FLAG_ENCRYPTED
    assert header.key_id == key_id_of(bytes.fromhex(K1))
    assert b"4111111111111111" not in stored[0]


def test_a_key_from_cachekit_keygen_works(monkeypatch):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "cachekit", "keygen"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = done.stdout.strip()
    assert len(key) == 64 and bytes.fromhex(key)
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", key)

    @cache.secure(backend=MemoryBackend())
    def token(user_id):
        return f"token-{user_id}"

    assert token(1) == token(1) == "token-1"
    assert token.cache_info().misses == 1


def test_the_first_call_already_uses_the_keyed_digest(monkeypatch):
    """The first call of a secure function (here with a keyword, so on the slow path,
    and with a tenant) must not write under an unkeyed digest before the plan sets
    the digest key: key names must never reveal guessable arguments."""
    from cachekit.tenancy import tenant_scope

    monkeypatch.setenv("CACHEKIT_MASTER_KEY", K1)
    for tenants in (False, True):
        store = DictBackend("plain")
        options = {"tenant_extractor": lambda user: "acme"} if tenants else {}

        def profile(user):
            return {"user": user}

        unkeyed = cache(backend=None, **options)(profile)
        secure = cache.secure(backend=store, l1=False, **options)(profile)
        secure(user=7)
        (key,) = store.store
        with tenant_scope("acme"):
            assert key == secure.cache_key(7)
            assert key != unkeyed.cache_key(7)
        secure(user=7)
        assert secure.cache_info().l2_hits == 1
