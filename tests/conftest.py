"""Shared test setup. Fixtures for each local server live in ``tests/fixtures``;
environment defaults in ``tests/environment.py``."""

pytest_plugins = [
    "tests.fixtures.platform",
    "tests.fixtures.dns",
    "tests.fixtures.tls",
]
