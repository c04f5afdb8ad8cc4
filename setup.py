"""Shim for tools that still call setup.py.

All metadata lives in pyproject.toml; the top-level ``kernels/`` folder is mapped into the
package as ``graphc.kernels`` there (``[tool.setuptools.package-dir]``), so the hand-written
C/CUDA sources are installed as package data next to the code that includes them.
"""

from setuptools import setup

setup()
