"""Backends shipped with the core. Others come from plugins (cachekit-redis, ...)."""

from cachekit.backends.memory import AsyncMemoryBackend, MemoryBackend

__all__ = ["AsyncMemoryBackend", "MemoryBackend"]
