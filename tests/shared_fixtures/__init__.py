"""Helpers shared by several test directories (tests/ has no packages, so this one is imported by
its own name: ``shared_fixtures`` is on sys.path because tests/conftest.py sits beside it)."""
