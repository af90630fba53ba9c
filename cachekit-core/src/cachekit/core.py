"""Key generation as the decorator does it, for debugging and manual invalidation.

>>> from cachekit.core import generate_cache_key
>>> generate_cache_key("get_user", (123,), {}).startswith("cachekit:get_user:")
True
"""

from cachekit.keys import generate_cache_key

__all__ = ["generate_cache_key"]
