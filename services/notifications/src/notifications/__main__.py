from pathlib import Path

from notifications.config import NotificationsSettings
from emporium_kit.cli import main as run


def main() -> None:
    run(
        service="notifications",
        settings_factory=NotificationsSettings,
        app_factory="notifications.bootstrap:build_app",
        migrations_dir=Path(__file__).resolve().parents[2] / "migrations",
    )


if __name__ == "__main__":
    main()
