#!/bin/bash
# The entrypoint of the local stand-in for the postgres:16 image, on Debian's PostgreSQL.
# It honours what compose.yaml and most users rely on from the official image:
# POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required, unless
# POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: the user), PGDATA,
# POSTGRES_INITDB_ARGS and POSTGRES_HOST_AUTH_METHOD (default scram-sha-256). An empty data
# folder is initialised once; a folder that holds a cluster is used as it is.
set -Eeuo pipefail

if [ "${1:0:1}" = "-" ]; then
  set -- postgres "$@"
fi
if [ "$1" != "postgres" ]; then
  exec "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export PGDATA POSTGRES_USER POSTGRES_DB POSTGRES_HOST_AUTH_METHOD

if [ "$(id -u)" = "0" ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != "trust" ]; then
    echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set" >&2
    exit 1
  fi
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
    --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >/dev/null
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != "postgres" ]; then
    # a server on the unix socket alone, for as long as the database takes to create
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
