"""JSON as a cachekit serializer: human-readable values in the backend."""

from __future__ import annotations

import json
from typing import Any

from cachekit.errors import DeserializationError, SerializationError


class JsonSerializer:
    """dict, list, str, int, float, bool and None; tuples come back as lists.

    Not everything corrupt can be recognised as such: ``12345`` cut to ``1234``
    is still valid JSON. cachekit's envelope checksum catches truncation before
    a payload reaches a serializer, so that is fine in practice.
    """

    name = "json"

    def serialize(self, obj: Any) -> bytes:
        try:
            text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"Could not serialize object of type {type(obj).__name__} with "
                f"JsonSerializer: {exc}",
                hint="Return JSON-compatible values, or use another serializer.",
            ) from None
        return text.encode("utf-8")

    def deserialize(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise DeserializationError(f"bytes are not valid UTF-8 JSON: {exc}") from None
