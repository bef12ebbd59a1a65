from emporium_kit.cli import main as run
from inventory.config import InventorySettings


def main() -> None:
    run(
        service="inventory",
        settings_factory=InventorySettings,
        app_factory="inventory.bootstrap:build_app",
    )


if __name__ == "__main__":
    main()
