"""Service defaults shared by every Emporium service: settings, database, errors, health, metrics."""
