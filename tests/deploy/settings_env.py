"""What each process's settings accept from the environment, for checking deploy files.

A deploy file (compose, a Kubernetes ConfigMap or Deployment) may set, for a service, only
variables that the service reads: its own ``<SERVICE>_*`` settings (pydantic-settings, the prefix
is the service name) and the standard variables every process reads (``OTEL_*``, ``LOG_FORMAT``,
...). It must set every *required* one: a field without a default, or one whose default only
works on a developer's machine (a loopback address, the development signing key), because in a
container 127.0.0.1 is the container itself.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic_settings import BaseSettings

SETTINGS: dict[str, str] = {
    "catalog": "catalog.config:CatalogSettings",
    "inventory": "inventory.config:InventorySettings",
    "orders": "orders.config:OrdersSettings",
    "payments": "payments.config:PaymentsSettings",
    "notifications": "notifications.config:NotificationsSettings",
    "gateway": "gateway.config:GatewaySettings",
}

# Read by every process outside its settings class (OpenTelemetry SDK, logging set-up, Python).
STANDARD_PREFIXES = ("OTEL_",)
STANDARD_NAMES = frozenset(
    {"LOG_FORMAT", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "TZ", "EMPORIUM_FAILPOINTS"}
)

_DEV_ONLY_MARKERS = ("127.0.0.1", "localhost", "change-me", "dev-only")


def settings_class(service: str) -> type[BaseSettings]:
    module, _, name = SETTINGS[service].partition(":")
    cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
    return cls


def prefix(service: str) -> str:
    return f"{service.upper()}_"


def accepted(service: str) -> set[str]:
    """Every ``<SERVICE>_*`` variable the service's settings read."""
    return {prefix(service) + field.upper() for field in settings_class(service).model_fields}


def required(service: str) -> set[str]:
    """Variables a deployment must set: no default, or a default that only works locally."""
    names = set()
    for field_name, field in settings_class(service).model_fields.items():
        default: Any = field.get_default(call_default_factory=True)
        if field.is_required() or (
            isinstance(default, str) and any(marker in default for marker in _DEV_ONLY_MARKERS)
        ):
            names.add(prefix(service) + field_name.upper())
    return names


def problems(service: str, names: set[str]) -> list[str]:
    """Why the variables `names` set for `service` are wrong (empty: they are right)."""
    ours = accepted(service)
    unknown = sorted(
        n for n in names if n not in ours and n not in STANDARD_NAMES and not n.startswith(STANDARD_PREFIXES)
    )
    missing = sorted(required(service) - names)
    out = [f"{service}: {n} is not a setting of {SETTINGS[service]}" for n in unknown]
    out += [f"{service}: required setting {n} is not set" for n in missing]
    return out
