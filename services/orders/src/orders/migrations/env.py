from emporium_kit.migrations import run_env
from orders.adapters.orm import metadata

run_env(metadata)
