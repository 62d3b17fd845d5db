"""Local real counterparts of the production services, bound to loopback.

The quickstart, the test suite and the benchmarks start them through this package:
the Docker Engine, Redis and PostgreSQL as system services, and Knot (DNS), Pebble
(ACME) and Caddy (edge proxy) as private processes under a state directory.
"""
