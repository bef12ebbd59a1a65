"""Handlers and the ports they need (user store, password hasher, token issuer)."""
