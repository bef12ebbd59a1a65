from emporium_kit.cli import main as run
from payments.config import PaymentsSettings


def main() -> None:
    run(
        service="payments",
        settings_factory=PaymentsSettings,
        app_factory="payments.bootstrap:build_app",
    )


if __name__ == "__main__":
    main()
