"""Step implementations, one module per backend."""

import importlib

STEP_MODULES = [
    "provisioning.steps.containers",
    "provisioning.steps.dns",
    "provisioning.steps.edge",
    "provisioning.steps.tls",
    "provisioning.steps.backups",
    "provisioning.steps.lifecycle",
]


def load_all() -> None:
    for module in STEP_MODULES:
        importlib.import_module(module)
