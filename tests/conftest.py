"""Shared test setup. Fixtures for each local server live in ``tests/fixtures``."""

pytest_plugins = [
    "tests.fixtures.dns",
    "tests.fixtures.tls",
]
