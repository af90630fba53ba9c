"""Test fixture: a plugin distribution that installs fine and breaks on import."""
