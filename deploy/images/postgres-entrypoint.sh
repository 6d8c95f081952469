#!/bin/sh
# The official image's start-up, the part compose and the tests use: a new data directory
# gets the user, the password and the database from the environment, then the init scripts
# run against a server that listens only on its socket; then the real server starts.
# POSTGRES_HOST_AUTH_METHOD=trust (tests only, as with the official image) needs no password.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  fi
  pwfile=$(mktemp)
  trap 'rm -f "$pwfile"' EXIT
  printf '%s' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  if [ -s "$pwfile" ]; then pwopt="--pwfile=$pwfile"; else pwopt=""; fi
  # shellcheck disable=SC2086 # pwopt is one option or none
  initdb -D "$PGDATA" -U "$POSTGRES_USER" $pwopt \
    --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" >/dev/null
  rm -f "$pwfile"
  trap - EXIT
  echo "host all all all $POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -qc "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for script in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$script" ] && psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -qf "$script"
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
if [ "${1:-}" = postgres ]; then
  shift
  exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
