"""Helpers the tests and the benchmarks share: project copies, images, servers, checks.

No pytest fixtures and no side effects on import, so ``benchmarks/`` imports them without
importing ``tests/``; the fixtures built on them live in ``tests/conftest.py``.
"""
