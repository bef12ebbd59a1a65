"""Plain Python: users, roles, the principal behind a request, and the named errors."""
