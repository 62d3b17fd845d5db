"""Settings for the benchmarks: the project's settings with a URLconf that adds /bench/ping."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
