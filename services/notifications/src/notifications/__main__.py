from emporium_kit.cli import main as run
from notifications.config import NotificationsSettings


def main() -> None:
    run(
        service="notifications",
        settings_factory=NotificationsSettings,
        app_factory="notifications.bootstrap:build_app",
    )


if __name__ == "__main__":
    main()
