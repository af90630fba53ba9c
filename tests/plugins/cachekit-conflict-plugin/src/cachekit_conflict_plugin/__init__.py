"""Test fixture: a plugin whose names clash with cachekit-example-backend's."""
