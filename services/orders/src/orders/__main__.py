from emporium_kit.cli import main as run
from orders.config import OrdersSettings


def main() -> None:
    run(
        service="orders",
        settings_factory=OrdersSettings,
        app_factory="orders.bootstrap:build_app",
    )


if __name__ == "__main__":
    main()
