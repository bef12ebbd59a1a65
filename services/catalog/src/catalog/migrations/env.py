from catalog.adapters.orm import metadata
from emporium_kit.migrations import run_env

run_env(metadata)
