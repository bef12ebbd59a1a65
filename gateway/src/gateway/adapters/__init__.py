"""PostgreSQL users, argon2id hashing, JWT tokens and the upstream HTTP client."""
