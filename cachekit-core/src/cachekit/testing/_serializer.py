"""The serializer suite: :class:`SerializerConformance`."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from cachekit.errors import DeserializationError, SerializationError
from cachekit.protocols import Serializer
from cachekit.testing._checks import (
    _check,
    _check_protocol,
    _fail,
    _raises,
    _run_threads,
    _same,
    _short,
    _skip,
)


class SerializerConformance:
    """Checks a :class:`~cachekit.protocols.Serializer`.

    Implement :meth:`make_serializer`; extend :meth:`sample_values` with what the
    serializer claims to handle and :meth:`unsupported_values` with what it must
    refuse. Example::

        import datetime
        from cachekit.serializers import MessagePackSerializer
        from cachekit.testing import SerializerConformance

        class TestMessagePack(SerializerConformance):
            def make_serializer(self):
                return MessagePackSerializer()

            def sample_values(self):
                return [*super().sample_values(), b"raw bytes"]

            def unsupported_values(self):
                return [datetime.date(2024, 1, 1), {1, 2}]

    ``detects_garbage = False`` declares a format that cannot tell every corrupt
    input from a valid one (JSON reads a truncated ``12345`` as ``1234``): such a
    serializer may return a value for garbage, but must never raise anything other
    than DeserializationError (E005).
    """

    #: True: every input from :meth:`garbage_inputs`, and every truncated sample
    #: payload, must raise DeserializationError (E005). False: the format cannot tell
    #: some garbage from data, so a value may come back, but any exception must still
    #: be DeserializationError.
    detects_garbage: ClassVar[bool] = True
    #: Threads sharing one instance in ``test_one_instance_is_safe_to_share_between_threads``.
    concurrency: ClassVar[int] = 8

    def make_serializer(self) -> Serializer:
        """Return the serializer under test."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_serializer()")

    def sample_values(self) -> list[Any]:
        """Values that must come back equal and of the same type (JSON-like by default)."""
        return [
            None,
            True,
            False,
            0,
            -1,
            2**53,
            1.5,
            -0.25,
            "",
            "text",
            "ünïcødé ✓ \x00 \n",
            [],
            [1, "a", None, [2.5, [False]]],
            {},
            {"id": 42, "name": "Ada", "tags": ["x", "y"], "nested": {"ok": True, "none": None}},
        ]

    def unsupported_values(self) -> list[Any]:
        """Values ``serialize`` must refuse with SerializationError (E004). Default: none."""
        return []

    def garbage_inputs(self) -> list[bytes]:
        """Bytes that are not a valid payload; truncated sample payloads are added to these."""
        return [b"", b"\xc1", b"\xff" * 16, b"\x00\xff\x00garbage\xfe", b"\x80\x05\x95"]

    def assert_round_trip(self, original: Any, restored: Any) -> None:
        """Fail unless ``restored`` equals ``original`` with the same types, recursively.

        Override for values whose ``==`` does not return a bool (data frames, arrays).
        """
        _check(
            _same(original, restored),
            f"round trip changed the value: {_short(original)} came back as {_short(restored)}",
        )

    def _round_trip(self, ser: Serializer, value: Any, reader: Serializer | None = None) -> None:
        try:
            data = ser.serialize(value)
        except Exception as exc:
            _fail(
                f"serialize({_short(value, 40)}) raised {type(exc).__name__}: {exc}; "
                "sample_values() lists values the serializer must round-trip: support it, or "
                "override sample_values() to leave it out (and unsupported_values() to list it)"
            )
        _check(
            isinstance(data, (bytes, bytearray))
            or (isinstance(data, memoryview) and data.c_contiguous),
            f"serialize({_short(value, 40)}) returned {type(data).__name__}, expected bytes "
            "(or a bytearray / C-contiguous memoryview)",
        )
        # What a backend hands back is bytes; L1 hands back what serialize returned.
        self.assert_round_trip(value, _deserialize(reader or ser, bytes(data), value))
        if type(data) is not bytes:
            self.assert_round_trip(value, _deserialize(ser, cast(bytes, data), value))

    def test_satisfies_the_serializer_protocol(self) -> None:
        ser = self.make_serializer()
        _check_protocol(ser, ("serialize", "deserialize"), "Serializer", "make_serializer()")
        _check(
            hasattr(ser, "name"),
            f"{_short(ser)} has no name attribute: the serializer's id written into every "
            "stored envelope",
        )

    def test_name_is_a_short_ascii_id(self) -> None:
        name: Any = getattr(self.make_serializer(), "name", None)
        _check(isinstance(name, str), f"name must be a str, got {type(name).__name__}")
        _check(
            0 < len(name) <= 32 and name.isascii() and name.isprintable() and " " not in name,
            f"name {name!r} must be 1-32 printable ASCII characters without spaces "
            "(it is written into every stored envelope)",
        )

    def test_name_is_the_same_for_every_instance(self) -> None:
        first, second = self.make_serializer().name, self.make_serializer().name
        _check(first == second, f"two instances are named {first!r} and {second!r}")

    def test_requires_authentication_is_a_bool_when_declared(self) -> None:
        flag = getattr(self.make_serializer(), "requires_authentication", False)
        _check(isinstance(flag, bool), f"requires_authentication must be a bool, got {flag!r}")

    def test_sample_values_round_trip(self) -> None:
        ser = self.make_serializer()
        for value in self.sample_values():
            self._round_trip(ser, value)

    def test_another_instance_reads_what_one_wrote(self) -> None:
        writer, reader = self.make_serializer(), self.make_serializer()
        for value in self.sample_values():
            self._round_trip(writer, value, reader)

    def test_unsupported_values_raise_serialization_error(self) -> None:
        values = self.unsupported_values()
        if not values:
            _skip("unsupported_values() lists nothing")
        ser = self.make_serializer()
        for value in values:
            with _raises(SerializationError, f"serialize({_short(value, 40)})"):
                ser.serialize(value)

    def test_garbage_is_rejected_cleanly(self) -> None:
        ser = self.make_serializer()
        inputs = list(self.garbage_inputs())
        for value in self.sample_values():
            data = bytes(ser.serialize(value))
            if len(data) >= 2:
                inputs += [data[:-1], data[: len(data) // 2]]
        for data in inputs:
            action = f"deserialize({_short(data, 40)})"
            if self.detects_garbage:
                with _raises(DeserializationError, action):
                    ser.deserialize(data)
                continue
            try:
                ser.deserialize(data)
            except DeserializationError as exc:
                _check(exc.code == "E005", f"{action}: DeserializationError with code {exc.code}")
            except Exception as exc:
                _fail(
                    f"{action}: raised {type(exc).__name__}: {exc}; a serializer must raise "
                    "cachekit.errors.DeserializationError (E005) for bytes it cannot read"
                )

    def test_one_instance_is_safe_to_share_between_threads(self) -> None:
        ser = self.make_serializer()
        values = self.sample_values()

        def work(_: int) -> None:
            for _round in range(20):
                for value in values:
                    self._round_trip(ser, value)

        _run_threads(self.concurrency, work)


def _deserialize(ser: Serializer, data: bytes, value: Any) -> Any:
    try:
        return ser.deserialize(data)
    except Exception as exc:
        _fail(
            f"deserialize() of what serialize({_short(value, 40)}) returned raised "
            f"{type(exc).__name__}: {exc}"
        )
