#!/bin/sh
# The role the application connects as: data rights (SELECT, INSERT, UPDATE, DELETE) on the app's
# tables and sequences, nothing else. It owns nothing, so it cannot ALTER or DROP a table, disable or
# drop the audit log's append-only trigger, or TRUNCATE (which skips row triggers); it cannot create
# tables or roles. Migrations run as the owner ($POSTGRES_USER, the `migrate` service only).
#
# The postgres image runs this once, when it initialises an empty data volume. It is idempotent: for a
# volume created before it existed, run it by hand once:
#   docker compose exec db sh /docker-entrypoint-initdb.d/10-app-role.sh
# Values are passed to psql as variables and quoted by psql/format(), never pasted into SQL.
set -eu
: "${POSTGRES_APP_USER:?set POSTGRES_APP_USER}"
: "${POSTGRES_APP_PASSWORD:?set POSTGRES_APP_PASSWORD}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" \
    -v app_user="$POSTGRES_APP_USER" -v app_password="$POSTGRES_APP_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION', :'app_user')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION PASSWORD %L',
              :'app_user', :'app_password') \gexec

REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app_user";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app_user";

-- Tables and sequences that exist now (a volume from before this script) ...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app_user";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO :"app_user";
-- ... and every one the owner's migrations create later.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"app_user";
SQL
