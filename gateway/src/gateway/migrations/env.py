"""Alembic environment for the gateway's own database (driven by ``python -m gateway migrate``)."""

from emporium_kit.migrations import run_env
from gateway.adapters.orm import metadata

run_env(metadata)
