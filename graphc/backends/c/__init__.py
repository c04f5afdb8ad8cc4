"""The C backend: generated C, compiled by gcc and loaded with cffi (ABI mode) through a compile cache."""

from .build import BuiltLibrary, build_library, cache_clear, cache_info
