"""The version of cachekit-core, kept apart so that any module can read it without
importing the package's ``__init__`` (which imports the decorator and the engine)."""

__version__ = "0.1.0"
