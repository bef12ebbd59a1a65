from emporium_kit.migrations import run_env
from inventory.adapters.orm import metadata

run_env(metadata)
