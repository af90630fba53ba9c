"""``@cache.secure`` (client-side AES-256-GCM, cachekit-crypto) against plain ``@cache``.

Both contenders are the same function with the same Redis L2, one decorated with
``@cache.secure``, the other with plain ``@cache``, on the same private redis-server as
the ``redis`` benchmark (``tests/support/redis_servers.py``; never the machine's Redis
on 6379). The difference between them is what encryption costs: the keyed digest of
the arguments in the key name, the envelope's authenticated header, and AES-GCM under
a fresh per-message key (one HMAC-SHA256 to derive it) on every write and every read
from Redis. The L1 holds plaintext, so an L1 hit should cost the same.

``@cache.secure`` needs ``CACHEKIT_MASTER_KEY``; when the environment has none, the
benchmark sets a fixed bench key for its own run and removes it afterwards.

The method is the ``redis`` benchmark's (its timing machinery is imported from
``bench_redis``): every comparison is a group timed on its own, each repeat times each
member once in a rotated order with the cyclic GC paused, the Redis ratios are the median
of the paired per-repeat ratios (minimums and medians alongside), the L1 ratio and the
encryptor's own figures (no I/O) are minimums. Client CPU time per call is recorded too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import msgpack
from bench_redis import (
    DISTINCT,
    Case,
    Fresh,
    Report,
    check_l1_hits,
    check_l2_hits,
    check_misses,
    connected_coherence,
    measure,
    method,
    named,
    private_server,
    profile,
    schedule,
    user,
)
from harness import Section, median

from cachekit import cache

NAME = "crypto"
TITLE = "@cache.secure (AES-256-GCM) vs plain @cache on the same private Redis"

HIT_TARGET = 1.10  # secure L2 hit of ~1 KB (L1 off) <= 1.10x the plain L2 hit
MASTER_KEY_ENV = "CACHEKIT_MASTER_KEY"
#: The benchmark's own master key (64 hex characters), used when the environment has none.
BENCH_MASTER_KEY = "be" * 32
TENANT = "acme"
#: Additional data for the raw encryptor timings, about as long as an envelope's context
#: (its fixed fields, serializer id, key id, a backend key of ~60 characters, expiry).
AAD = b"cachekit-envelope\x00\x01\x0a\x00msgpack\x00" + b"k" * 100


@contextmanager
def master_key() -> Iterator[str]:
    """``CACHEKIT_MASTER_KEY`` for the run: the environment's, else the bench key (removed
    afterwards, so that benchmarks run after this one see the environment they were given).
    Yields where the key came from."""
    was = os.environ.get(MASTER_KEY_ENV)
    if was:
        yield "the environment's CACHEKIT_MASTER_KEY"
        return
    os.environ[MASTER_KEY_ENV] = BENCH_MASTER_KEY
    try:
        yield "a fixed bench CACHEKIT_MASTER_KEY"
    finally:
        if was is None:
            os.environ.pop(MASTER_KEY_ENV, None)
        else:
            os.environ[MASTER_KEY_ENV] = was


def run(quick: bool) -> Section:
    with master_key() as key_source, private_server() as server:
        sec = Section(
            NAME,
            TITLE,
            method=method(quick, server, "L1 ratio and encryptor figures: minimums"),
        )
        return _measure(quick, sec, server, key_source)


def _pair(body: Any, name: str, **options: Any) -> tuple[Any, Any]:
    """(plain, secure): ``body`` under ``@cache`` and under ``@cache.secure``, same options."""
    return (
        named(body, f"crypto_plain_{name}", **options),
        named(body, f"crypto_secure_{name}", cache.secure, **options),
    )


def _encryptors() -> tuple[Any, Any]:
    """The ``aes-gcm`` encryptor without a tenant and for TENANT, built as cachekit does."""
    from cachekit.plugins import encryptor_spec

    factory = encryptor_spec("aes-gcm").factory
    return factory(tenant=None, environ=os.environ), factory(tenant=TENANT, environ=os.environ)


def _encryptor_cases(plaintext: bytes) -> list[Case]:
    cases = []
    for enc, which in zip(_encryptors(), ("", f", tenant {TENANT!r}"), strict=True):
        blob = enc.encrypt(plaintext, AAD)
        if enc.decrypt(blob, AAD, key_id=enc.key_id) != plaintext:
            raise RuntimeError(f"aes-gcm{which}: decrypt(encrypt(x)) != x")
        cases += [
            Case(f"aes-gcm encrypt, 1 KB{which}", partial(enc.encrypt, aad=AAD), plaintext),
            Case(
                f"aes-gcm decrypt, 1 KB{which}",
                partial(enc.decrypt, aad=AAD, key_id=enc.key_id),
                blob,
            ),
        ]
    return cases


def _check_encrypted(server: Any, pairs: list[tuple[Any, Any]]) -> None:
    """What each secure function stored in Redis is ciphertext; the plain one's is not."""
    from cachekit.envelope import FLAG_ENCRYPTED, read_header

    client = server.client()
    try:
        for plain, secure in pairs:
            value = msgpack.packb(plain(42))
            for fn, encrypted in ((plain, False), (secure, True)):
                blob = client.get(fn.cache_key(42))
                if blob is None:
                    raise RuntimeError(f"{fn.__name__}(42) is not in Redis")
                flagged = bool(read_header(blob).flags & FLAG_ENCRYPTED)
                if flagged != encrypted or (value in blob) == encrypted:
                    raise RuntimeError(
                        f"{fn.__name__}(42) in Redis: encrypted flag {flagged}, "
                        f"plaintext {'present' if value in blob else 'absent'}"
                    )
    finally:
        client.close()


def _measure(quick: bool, sec: Section, server: Any, key_source: str) -> Section:
    hit_repeats, miss_repeats, budget, miss_budget = schedule(quick)
    url = server.url
    l2_1k = _pair(profile, "l2_hit_1k", backend=url, l1=False)
    l2_small = _pair(user, "l2_hit_small", backend=url, l1=False)
    l1_hit = _pair(user, "l1_hit_in_front", backend=url)
    miss = _pair(profile, "miss_1k", backend=url, l1=False, distributed_lock=False)
    functions = (*l2_1k, *l2_small, *l1_hit, *miss)

    # Warm up: store the hit entries, resolve every plan, start the coherence listener.
    for fn in functions:
        fn(42)
    for (plain, secure), body in ((l2_1k, profile), (l2_small, user), (l1_hit, user)):
        if plain(42) != body(42) or secure(42) != body(42):
            raise RuntimeError(f"{secure.__name__} or {plain.__name__} returned the wrong value")
    _check_encrypted(server, [l2_1k, l2_small, miss])
    coherence = connected_coherence(l1_hit[1].__cachekit__.plan.backend)
    plaintext = msgpack.packb(profile(42))
    before = {id(fn): fn.cache_info() for fn in functions}

    fresh = Fresh()
    hit_large = [
        Case("plain L2 hit (l1=False), 1 KB", l2_1k[0], 42),
        Case("secure L2 hit (l1=False), 1 KB", l2_1k[1], 42),
    ]
    hit_small = [
        Case("plain L2 hit (l1=False), small", l2_small[0], 42),
        Case("secure L2 hit (l1=False), small", l2_small[1], 42),
    ]
    l1 = [
        Case("plain L1 hit in front of Redis, small", l1_hit[0], 42),
        Case("secure L1 hit in front of Redis, small", l1_hit[1], 42),
    ]
    misses = [
        Case("plain miss (l1=False, no lock), 1 KB", miss[0], DISTINCT),
        Case("secure miss (l1=False, no lock), 1 KB", miss[1], DISTINCT),
    ]
    raw = _encryptor_cases(plaintext)
    measure(hit_large, hit_repeats, budget, fresh)
    measure(hit_small, hit_repeats, budget, fresh)
    measure(l1, hit_repeats, budget, fresh)
    measure(misses, miss_repeats, miss_budget, fresh)
    measure(raw, hit_repeats, budget, fresh)

    # The timed calls were what they claim to be.
    for fn, case in zip((*l2_1k, *l2_small), (*hit_large, *hit_small), strict=True):
        check_l2_hits(fn, case, before[id(fn)])
    refills = {
        case.label: check_l1_hits(fn, f"{case.label} loop", before[id(fn)])
        for fn, case in zip(l1_hit, l1, strict=True)
    }
    for fn, case in zip(miss, misses, strict=True):
        check_misses(fn, case, before[id(fn)])

    # -- report ----------------------------------------------------------------------
    notes = {
        "plain L2 hit (l1=False), 1 KB": f"{len(plaintext)} B of msgpack",
        "plain L2 hit (l1=False), small": f"{len(msgpack.packb(user(42)))} B of msgpack",
        **{label: f"{n} L2 refills during the loops" for label, n in refills.items()},
    }
    report = Report(sec, (*hit_large, *hit_small, *l1, *misses))
    report.figures(notes, cpu=(*hit_large, *hit_small, *misses))
    for c in raw:
        sec.figure(c.label, min(c.wall) / 1000, median(c.wall) / 1000, "us/call")

    report.paired_ratio(
        "secure / plain L2 hit (l1=False), 1 KB",
        "secure L2 hit (l1=False), 1 KB",
        "plain L2 hit (l1=False), 1 KB",
        HIT_TARGET,
    )
    report.delta(
        "secure L2 hit adds per call, 1 KB",
        "secure L2 hit (l1=False), 1 KB",
        "plain L2 hit (l1=False), 1 KB",
    )
    report.paired_ratio(
        "secure / plain L2 hit (l1=False), small",
        "secure L2 hit (l1=False), small",
        "plain L2 hit (l1=False), small",
        None,
    )
    report.paired_ratio(
        "secure / plain miss (l1=False, no lock), 1 KB",
        "secure miss (l1=False, no lock), 1 KB",
        "plain miss (l1=False, no lock), 1 KB",
        None,
    )
    report.delta(
        "secure miss adds per call, 1 KB",
        "secure miss (l1=False, no lock), 1 KB",
        "plain miss (l1=False, no lock), 1 KB",
    )
    report.paired_ratio(
        "secure / plain L1 hit in front of Redis, small",
        "secure L1 hit in front of Redis, small",
        "plain L1 hit in front of Redis, small",
        None,
        minimums=True,
    )

    us = {c.label: min(c.wall) / 1000 for c in raw}
    added = (median(hit_large[1].cpu) - median(hit_large[0].cpu)) / 1000
    sec.notes.append(
        f"aes-gcm on {len(plaintext)} B with {len(AAD)} B of AAD: encrypt "
        f"{us['aes-gcm encrypt, 1 KB']:.2f} us, decrypt {us['aes-gcm decrypt, 1 KB']:.2f} us "
        f"(tenant {TENANT!r}: {us[f'aes-gcm encrypt, 1 KB, tenant {TENANT!r}']:.2f} / "
        f"{us[f'aes-gcm decrypt, 1 KB, tenant {TENANT!r}']:.2f} us); the secure 1 KB L2 hit "
        f"adds {added:+.1f} us of client CPU per call, its decrypt included"
    )
    import cryptography

    sec.notes.append(
        f"key: {key_source}; entries in Redis checked: ciphertext for @cache.secure, "
        f"plaintext for @cache; cryptography {cryptography.__version__}; coherence listener "
        f"{'connected' if coherence.healthy else 'NOT connected'}"
    )
    return sec
