"""Test fixture: the package of a plugin whose hooks live in ``.plugin``.

An entry point naming this package (not ``cachekit_empty_plugin.plugin``) loads
fine and provides nothing.
"""
