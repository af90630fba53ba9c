"""``import cachekit`` stays cheap: it loads none of the standard modules that cost start-up time.

Checked in a fresh interpreter (``sys.modules`` of this process already holds them all).
The time itself is a benchmark (``make bench``, section ``import``), not a test.
"""

from __future__ import annotations

import subprocess
import sys

#: Modules ``import cachekit`` must not load: each costs milliseconds and the per-call
#: path does not need it (typing: ~7 ms with re and enum; the others arrive on first use).
NOT_AT_IMPORT = ("typing", "re", "enum", "logging", "inspect", "asyncio", "pluggy", "msgpack")


def _loaded_by(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {NOT_AT_IMPORT!r} if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    return proc.stdout.split()


def test_import_cachekit_loads_no_typing_re_enum_logging_or_plugins() -> None:
    assert _loaded_by("") == [], "the bare interpreter already loads them: the test is void"
    assert _loaded_by("import cachekit") == []


def test_reading_an_envelope_header_does_not_need_typing() -> None:
    code = (
        "import cachekit.envelope as e\n"
        "h = e.read_header(e.seal(b'x', serializer='msgpack', key='k'))\n"
        "assert (h.serializer, h.payload_offset, h.expires_at) == ('msgpack', 16, None), h\n"
        "assert isinstance(h, tuple) and type(h).__name__ == 'Header'\n"
    )
    assert "typing" not in _loaded_by(code)
