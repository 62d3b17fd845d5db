"""Drivers: the only code that talks to the outside world.

Each role (container runtime, DNS, edge proxy, ACME) has a small interface in
``<role>/base.py`` and implementations chosen by settings. ``registry`` builds them.
"""
