#!/bin/bash
# One database and one login role per service and the gateway, each role owning its database
# (since PostgreSQL 15 the owner alone may create in schema public, so no grants are needed).
#
# Run once by the postgres image's entrypoint, from /docker-entrypoint-initdb.d, when the data
# volume is empty; later password changes need `ALTER ROLE` or a fresh volume
# (`docker compose down -v`). The passwords come from <NAME>_DB_PASSWORD in the environment
# (docker-compose.yml passes them in); a missing one fails the initialisation.
set -eo pipefail  # as the image's entrypoint, which sources a script that is not executable

for name in catalog inventory orders payments notifications gateway; do
  var="${name^^}_DB_PASSWORD"
  password="${!var:?$var is not set}"
  # psql quotes the values itself (:"name" an identifier, :'password' a literal), so a password
  # may hold any character; the service's URL must percent-encode it, though.
  psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    --set=name="$name" --set=password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
