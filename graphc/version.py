"""graphc's version, in a module of its own: the compile caches key on it, and a backend importing
the top-level package would depend on every layer above it."""

__version__ = "0.1.0"
