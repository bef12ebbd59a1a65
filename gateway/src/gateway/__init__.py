"""Emporium API gateway: the only public door (auth, routing to the five services)."""
