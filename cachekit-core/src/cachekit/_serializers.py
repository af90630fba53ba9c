"""The serializers shipped with the core (published by :mod:`cachekit.serializers`).

What each one accepts and guarantees is told in :mod:`cachekit.serializers`.

This module is ground: it imports nothing of cachekit but ``errors``, so the core's
own plugin (``_builtin_plugin``) can build these classes without importing the
public :mod:`cachekit.serializers`, which looks plugin classes up in the registry.
"""

from __future__ import annotations

import msgpack

from cachekit.errors import DeserializationError, SerializationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_SERIALIZER",
    "DefaultSerializer",
    "MessagePackSerializer",
    "PickleSerializer",
]

_MSGPACK_TYPES = "dict, list, tuple, str, int, float, bool, None and bytes"


_INT_RANGE = f"{-(2**63)} (-2**63) to {2**64 - 1} (2**64 - 1)"


def _int_out_of_range() -> SerializationError:
    return SerializationError(
        "Could not serialize object of type int with MessagePackSerializer: MessagePack "
        f"stores integers from {_INT_RANGE}, and this one is outside that range.",
        hint="Use serializer=PickleSerializer(), or return the number as a str.",
    )


def _unsupported(obj: Any) -> Any:
    if isinstance(obj, int):  # msgpack hands over the ints it cannot store
        raise _int_out_of_range()
    cls = type(obj)
    name = cls.__name__
    if cls.__module__ not in ("builtins", "datetime"):
        name = f"{name} ({cls.__module__}.{cls.__qualname__})"
    raise SerializationError(
        f"Could not serialize object of type {name} with MessagePackSerializer, "
        f"which supports {_MSGPACK_TYPES}.",
        hint=(
            "Use @cache(serializer=PickleSerializer()) for arbitrary Python objects, or "
            "convert the value to supported types before returning it (for example "
            "datetime.isoformat(), model.model_dump(), list(a_set))."
        ),
    )


class MessagePackSerializer:
    """MessagePack: the default serializer. Thread-safe and stateless."""

    __module__ = "cachekit.serializers"  # its public home (reprs, pickle)
    name = "msgpack"
    requires_authentication = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def serialize(self, obj: Any) -> bytes:
        try:
            return msgpack.packb(obj, use_bin_type=True, default=_unsupported)  # type: ignore[no-any-return]
        except SerializationError:
            raise
        except OverflowError:
            raise _int_out_of_range() from None
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"Could not serialize value with MessagePackSerializer: {exc}.",
                hint="Use serializer=PickleSerializer() or convert the value to basic types.",
            ) from None

    def deserialize(self, data: bytes) -> Any:
        # serialize() never writes an extension type, so one read back was planted:
        # max_ext_len=0 refuses the ones with data (the timestamp, -1, never reaches
        # ext_hook) and _refuse_ext the empty ones.
        try:
            return msgpack.unpackb(data, strict_map_key=False, ext_hook=_refuse_ext, max_ext_len=0)
        except TypeError:
            # A map keyed by arrays ({(1, 2): ...} was serialized): arrays decode as
            # unhashable lists, so rebuild such keys as tuples. Slow path only.
            try:
                return msgpack.unpackb(
                    data,
                    strict_map_key=False,
                    ext_hook=_refuse_ext,
                    max_ext_len=0,
                    object_pairs_hook=_tuple_keyed,
                )
            except Exception as exc:
                error = exc
        except Exception as exc:  # msgpack raises several unrelated types
            error = exc
        raise DeserializationError(f"bytes are not valid MessagePack ({type(error).__name__}).")


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"MessagePack extension type {code}, which this serializer never writes")


def _as_key(value: Any) -> Any:
    return tuple(map(_as_key, value)) if isinstance(value, list) else value


def _tuple_keyed(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_as_key(k): v for k, v in pairs}


#: The serializer used when none is given (MessagePack).
DefaultSerializer = MessagePackSerializer


class PickleSerializer:
    """Pickle (protocol 5 by default): any picklable object.

    Loading pickle executes code chosen by whoever wrote the bytes. cachekit only
    unpickles bytes that come from this process (L1), that carry a valid HMAC from
    a process holding the same signing key, or that were decrypted with
    authenticated encryption (``@cache.secure``).
    """

    __module__ = "cachekit.serializers"  # its public home (reprs, pickle)
    name = "pickle"
    requires_authentication = True

    def __init__(self, protocol: int | None = None) -> None:
        import pickle

        self._pickle = pickle
        self.protocol = pickle.HIGHEST_PROTOCOL if protocol is None else protocol
        if not 2 <= self.protocol <= pickle.HIGHEST_PROTOCOL:
            from cachekit.errors import ConfigurationError

            raise ConfigurationError(
                f"pickle protocol must be between 2 and {pickle.HIGHEST_PROTOCOL}, "
                f"got {protocol!r}."
            )

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PickleSerializer) and other.protocol == self.protocol

    def __hash__(self) -> int:
        return hash((PickleSerializer, self.protocol))

    def serialize(self, obj: Any) -> bytes:
        try:
            return self._pickle.dumps(obj, protocol=self.protocol)
        except Exception as exc:  # PicklingError, TypeError, AttributeError, ...
            raise SerializationError(
                f"Could not serialize object of type {type(obj).__name__} with "
                f"PickleSerializer: {exc}",
                hint="Return a picklable value (no locks, sockets, generators or lambdas).",
            ) from None

    def deserialize(self, data: bytes) -> Any:
        try:
            return self._pickle.loads(data)
        except Exception as exc:
            raise DeserializationError(
                f"bytes could not be unpickled ({type(exc).__name__})."
            ) from None


#: The default serializer instance (MessagePack).
DEFAULT_SERIALIZER = DefaultSerializer()
