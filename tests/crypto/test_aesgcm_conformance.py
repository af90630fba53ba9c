"""The aes-gcm encryptor passes cachekit.testing.EncryptorConformance, in every shape
the decorator can build it: no tenant, a tenant, a keyring in mid-rotation, and
through the plugin factory reading an environment mapping."""

from __future__ import annotations

import hashlib

from cachekit.protocols import Encryptor
from cachekit.testing import EncryptorConformance
from cachekit_crypto.aesgcm import AesGcmEncryptor
from cachekit_crypto.keys import Keyring
from cachekit_crypto.plugin import make_encryptor


def _key(n: int) -> bytes:
    return hashlib.sha256(b"cachekit-crypto test key %d" % n).digest()


class TestAesGcmWithoutTenant(EncryptorConformance):
    def make_encryptor(self) -> Encryptor:
        return AesGcmEncryptor(Keyring(_key(1)))

    def make_other_encryptor(self) -> Encryptor:
        return AesGcmEncryptor(Keyring(_key(2)))


class TestAesGcmWithTenant(EncryptorConformance):
    def make_encryptor(self) -> Encryptor:
        return AesGcmEncryptor(Keyring(_key(1)), tenant="acme")

    def make_other_encryptor(self) -> Encryptor:
        # Same master key, another tenant: must not read acme's data either.
        return AesGcmEncryptor(Keyring(_key(1)), tenant="globex")


class TestAesGcmDuringRotation(EncryptorConformance):
    def make_encryptor(self) -> Encryptor:
        return AesGcmEncryptor(Keyring(_key(2), [_key(1)]))

    def make_other_encryptor(self) -> Encryptor:
        return AesGcmEncryptor(Keyring(_key(3), [_key(4)]))


class TestAesGcmFromThePluginFactory(EncryptorConformance):
    def make_encryptor(self) -> Encryptor:
        return make_encryptor(tenant=None, environ={"CACHEKIT_MASTER_KEY": _key(1).hex()})

    def make_other_encryptor(self) -> Encryptor:
        return make_encryptor(tenant=None, environ={"CACHEKIT_MASTER_KEY": _key(2).hex()})
