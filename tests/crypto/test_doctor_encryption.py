"""`cachekit doctor` with cachekit-crypto installed: it builds the encryptor the way
`@cache.secure` would and shows only public key ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cachekit_crypto.keys import key_id_of

CURRENT = "3c" * 32
PREVIOUS = "4d" * 32


def doctor(**variables: str) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_")}
    env.update(variables, CACHEKIT_BACKEND="memory://doctor")
    done = subprocess.run(
        [sys.executable, "-m", "cachekit", "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, json.loads(done.stdout), done.stdout + done.stderr


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_doctor_shows_the_key_ids_during_a_rotation():
    status, report, text = doctor(
        CACHEKIT_MASTER_KEY=CURRENT, CACHEKIT_PREVIOUS_MASTER_KEYS=PREVIOUS
    )
    assert status == 0, text
    detail = check(report, "encryption")["detail"]
    current_id = key_id_of(bytes.fromhex(CURRENT))
    previous_id = key_id_of(bytes.fromhex(PREVIOUS))
    assert f"new entries use key id {current_id}" in detail
    assert f"key ids {previous_id} stay readable" in detail
    assert "retiring it renames every entry" in detail
    assert CURRENT not in text and PREVIOUS not in text


def test_doctor_fails_the_encryption_check_for_a_bad_previous_key():
    status, report, text = doctor(
        CACHEKIT_MASTER_KEY=CURRENT, CACHEKIT_PREVIOUS_MASTER_KEYS="not-a-key"
    )
    assert status == 1
    encryption = check(report, "encryption")
    assert encryption["status"] == "fail" and "E002" in encryption["detail"]
    assert "not-a-key" not in text
