"""The per-call engine's private parts (see docs/architecture.md, "The engine").

Nothing here is public: :mod:`cachekit.cached` and the decorator use it, plugins do not.
"""
