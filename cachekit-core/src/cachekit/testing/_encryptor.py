"""The encryptor suite: :class:`EncryptorConformance`."""

from __future__ import annotations

import inspect
import os
from typing import Any, ClassVar

from cachekit.errors import DecryptionError
from cachekit.protocols import Encryptor
from cachekit.testing._checks import (
    _check,
    _check_protocol,
    _fail,
    _raises,
    _run_threads,
    _short,
    _skip,
)


class EncryptorConformance:
    """Checks an :class:`~cachekit.protocols.Encryptor` (authenticated encryption).

    Implement :meth:`make_encryptor`; implement :meth:`make_other_encryptor` to
    also check that a different key cannot read the data. Example::

        from cachekit.testing import EncryptorConformance
        from cachekit_myaead import MyEncryptor

        class TestMyEncryptor(EncryptorConformance):
            def make_encryptor(self):
                return MyEncryptor(key=b"k" * 32)

            def make_other_encryptor(self):
                return MyEncryptor(key=b"o" * 32)

    Every rejection must be :class:`cachekit.errors.DecryptionError` (E003): wrong
    AAD, any flipped bit, truncation, extension, an unknown key id.
    """

    #: Threads sharing one instance in ``test_one_instance_is_safe_to_share_between_threads``.
    concurrency: ClassVar[int] = 8

    def make_encryptor(self) -> Encryptor:
        """Return the encryptor under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_encryptor()")

    def make_other_encryptor(self) -> Encryptor | None:
        """An encryptor with a different key, or None to skip the wrong-key test."""
        return None

    def sample_plaintexts(self) -> list[bytes]:
        """Plaintexts that must round-trip (empty, short, binary, 64 KiB)."""
        return [b"", b"x", b"a secret value " * 8, bytes(range(256)), os.urandom(64 * 1024)]

    def _decrypt(self, enc: Encryptor, blob: bytes, aad: bytes, key_id: str | None = None) -> bytes:
        try:
            return enc.decrypt(blob, aad, key_id=enc.key_id if key_id is None else key_id)
        except TypeError as exc:
            if "key_id" not in str(exc):
                raise
            _fail(
                f"decrypt() does not take key_id ({exc}); its signature must be "
                "decrypt(blob, aad, *, key_id): cachekit passes the key id stored in the "
                "envelope, so that a rotated key needs no trial decryption"
            )

    def test_satisfies_the_encryptor_protocol(self) -> None:
        enc = self.make_encryptor()
        _check_protocol(enc, ("encrypt", "decrypt"), "Encryptor", "make_encryptor()")
        _check(
            hasattr(enc, "key_id"),
            f"{_short(enc)} has no key_id attribute: the id of the key new blobs are "
            "encrypted with, stored in every envelope",
        )
        try:
            inspect.signature(enc.decrypt).bind(b"", b"", key_id="k")
        except TypeError as exc:
            _fail(f"decrypt(blob, aad, *, key_id) cannot be called that way: {exc}")
        except ValueError:  # no signature to inspect (a builtin): the other tests call it
            pass

    def test_key_id_is_a_short_ascii_string(self) -> None:
        key_id: Any = getattr(self.make_encryptor(), "key_id", None)
        _check(isinstance(key_id, str), f"key_id must be a str, got {type(key_id).__name__}")
        _check(
            0 < len(key_id) < 256 and key_id.isascii() and key_id.isprintable(),
            f"key_id {key_id!r} must be 1-255 printable ASCII characters (it is stored in "
            "the envelope)",
        )

    def test_plaintexts_round_trip(self) -> None:
        enc = self.make_encryptor()
        for plaintext in self.sample_plaintexts():
            blob = enc.encrypt(plaintext, b"aad")
            _check(isinstance(blob, bytes), f"encrypt() returned {type(blob).__name__}, not bytes")
            got = self._decrypt(enc, blob, b"aad")
            _check(got == plaintext, f"decrypt(encrypt(p)) != p for p={_short(plaintext)}")

    def test_ciphertext_does_not_contain_the_plaintext(self) -> None:
        enc = self.make_encryptor()
        plaintext = b"card=4111111111111111;" * 4
        blob = enc.encrypt(plaintext, b"aad")
        _check(b"4111111111111111" not in blob, "the ciphertext contains the plaintext")

    def test_same_plaintext_encrypts_differently_each_time(self) -> None:
        enc = self.make_encryptor()
        first, second = enc.encrypt(b"same", b"aad"), enc.encrypt(b"same", b"aad")
        _check(first != second, "two encryptions of one plaintext are identical (nonce reuse?)")

    def test_other_aad_is_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"value", b"cachekit:users:load_user:1")
        for aad in (b"cachekit:users:load_user:2", b"", b"cachekit:users:load_user:1\x00"):
            with _raises(DecryptionError, f"decrypt() with aad={aad!r}"):
                self._decrypt(enc, blob, aad)
        empty = enc.encrypt(b"value", b"")
        with _raises(DecryptionError, "decrypt() of a blob sealed with empty aad, given b'x'"):
            self._decrypt(enc, empty, b"x")

    def test_every_flipped_bit_is_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"sixteen byte msg", b"aad")
        for position in range(len(blob)):
            for bit in range(8):
                tampered = bytearray(blob)
                tampered[position] ^= 1 << bit
                with _raises(
                    DecryptionError, f"decrypt() with bit {bit} of byte {position} flipped"
                ):
                    self._decrypt(enc, bytes(tampered), b"aad")

    def test_truncated_blobs_are_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"sixteen byte msg", b"aad")
        for length in range(len(blob)):
            with _raises(DecryptionError, f"decrypt() of the first {length}/{len(blob)} bytes"):
                self._decrypt(enc, blob[:length], b"aad")

    def test_extended_blobs_are_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"value", b"aad")
        for suffix in (b"\x00", b"extra bytes"):
            with _raises(DecryptionError, f"decrypt() of the blob + {suffix!r}"):
                self._decrypt(enc, blob + suffix, b"aad")

    def test_unknown_key_id_is_rejected(self) -> None:
        enc = self.make_encryptor()
        blob = enc.encrypt(b"value", b"aad")
        with _raises(DecryptionError, "decrypt() with a key_id nobody has"):
            self._decrypt(enc, blob, b"aad", key_id="no-such-key-id")

    def test_another_key_cannot_decrypt(self) -> None:
        other = self.make_other_encryptor()
        if other is None:
            _skip("make_other_encryptor() returns None")
        enc = self.make_encryptor()
        blob = enc.encrypt(b"value", b"aad")
        for key_id in dict.fromkeys((other.key_id, enc.key_id)):
            with _raises(DecryptionError, f"decrypt() by another key, key_id={key_id!r}"):
                other.decrypt(blob, b"aad", key_id=key_id)

    def test_one_instance_is_safe_to_share_between_threads(self) -> None:
        enc = self.make_encryptor()

        def work(worker: int) -> None:
            for i in range(50):
                plaintext = f"{worker}:{i}".encode()
                aad = f"aad {worker}".encode()
                got = self._decrypt(enc, enc.encrypt(plaintext, aad), aad)
                _check(got == plaintext, f"thread {worker} read back {got!r} for {plaintext!r}")

        _run_threads(self.concurrency, work)
