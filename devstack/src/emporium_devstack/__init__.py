"""Stdlib-only helpers that run the real Kafka broker and PostgreSQL for development and tests."""
