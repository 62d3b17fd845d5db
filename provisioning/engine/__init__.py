"""The operation engine: step definitions, operation kinds and the runner."""
