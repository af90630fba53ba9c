"""cachekit-crypto is found through its entry point, like any third-party plugin, and
its plugin module imports cheaply (no cryptography until an encryptor is built)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cachekit import plugins
from cachekit.errors import ConfigurationError
from cachekit_crypto import plugin
from cachekit_crypto.aesgcm import AesGcmEncryptor

K1 = "ab" * 32


def _run(code: str) -> dict:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CACHEKIT_") and name != "REDIS_URL"
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_aes_gcm_is_provided_by_the_cachekit_crypto_distribution():
    spec = plugins.encryptor_spec("aes-gcm")
    assert spec.name == "aes-gcm"
    assert spec.factory is plugin.make_encryptor
    entry = plugins.registry().encryptors["aes-gcm"]
    assert entry.plugin.distribution == "cachekit-crypto"
    assert entry.plugin.version == "0.1.0"
    assert entry.plugin.module == "cachekit_crypto.plugin"
    assert entry.plugin.error is None
    assert entry.rivals == []


def test_the_registered_factory_builds_an_aes_gcm_encryptor_the_way_the_core_calls_it():
    spec = plugins.encryptor_spec("aes-gcm")
    enc = plugins.build(
        spec.factory, "encryptor aes-gcm", tenant="acme", environ={"CACHEKIT_MASTER_KEY": K1}
    )
    assert isinstance(enc, AesGcmEncryptor)
    assert enc.tenant == "acme"
    with pytest.raises(ConfigurationError, match="bogus"):
        plugins.build(
            spec.factory,
            "encryptor aes-gcm",
            tenant=None,
            environ={"CACHEKIT_MASTER_KEY": K1},
            bogus=True,
        )


def test_importing_the_plugin_module_does_not_import_cryptography():
    result = _run(
        """
        import json, sys
        def heavy():
            return sorted(m for m in sys.modules if m.split(".")[0] == "cryptography")
        import cachekit_crypto.plugin
        steps = {"after import": heavy()}
        from cachekit import plugins
        plugins.registry()
        steps["after registry()"] = heavy()
        spec = plugins.encryptor_spec("aes-gcm")
        steps["after encryptor_spec()"] = heavy()
        spec.factory(tenant=None, environ={"CACHEKIT_MASTER_KEY": "ab" * 32})
        steps["after the factory"] = bool(heavy())
        print(json.dumps(steps))
        """
    )
    assert result == {
        "after import": [],
        "after registry()": [],
        "after encryptor_spec()": [],
        "after the factory": True,
    }


def test_importing_the_package_is_cheap_and_names_resolve_lazily():
    result = _run(
        """
        import json, sys
        import cachekit_crypto
        before = [m for m in sys.modules if m.startswith(("cryptography", "cachekit_crypto."))]
        cls = cachekit_crypto.AesGcmEncryptor
        print(json.dumps({"before": before, "class": cls.__module__,
                          "version": cachekit_crypto.__version__}))
        """
    )
    assert result == {"before": [], "class": "cachekit_crypto.aesgcm", "version": "0.1.0"}
