from catalog.config import CatalogSettings
from emporium_kit.cli import main as run


def main() -> None:
    run(
        service="catalog",
        settings_factory=CatalogSettings,
        app_factory="catalog.bootstrap:build_app",
    )


if __name__ == "__main__":
    main()
