#!/usr/bin/env bash
# Make a local PostgreSQL ready for the database tests, then print the URL to export:
#
#   export COMFYFLEET_TEST_PG_URL="$(bash scripts/test-postgres.sh)"
#
# Idempotent: installs Debian's postgresql if no server binaries exist, creates a cluster if
# none exists, starts it (as the cluster owner, the postgres user), and creates or updates a
# `comfyfleet` role (password login, CREATEDB) that the tests use to make throw-away databases.
# Listens on 127.0.0.1 only. Progress goes to stderr; stdout carries only the URL.
# Needs root (apt-get, pg_createcluster, runuser). Override with PG_ROLE / PG_PASSWORD.
set -euo pipefail

role="${PG_ROLE:-comfyfleet}"
password="${PG_PASSWORD:-comfyfleet}"

say() { echo "test-postgres: $*" >&2; }

installed_version() {
  # The newest installed server version (a directory under /usr/lib/postgresql with a server).
  local dir best=""
  for dir in /usr/lib/postgresql/*/bin/postgres; do
    [ -x "$dir" ] || continue
    best="$(basename "$(dirname "$(dirname "$dir")")")"
  done
  echo "$best"
}

version="$(installed_version)"
if [ -z "$version" ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
  say "installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  version="$(installed_version)"
fi
if [ -z "$version" ]; then
  say "no PostgreSQL server found after installing; giving up"
  exit 1
fi

# Debian's apt install normally creates a "main" cluster; a trimmed image may not have one.
cluster="$(pg_lsclusters --no-header 2>/dev/null | awk -v v="$version" '$1 == v {print $2; exit}')"
if [ -z "$cluster" ]; then
  cluster=main
  say "creating cluster $version/$cluster"
  pg_createcluster "$version" "$cluster" -- --auth-local=peer --auth-host=scram-sha-256 >&2
fi

port="$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $3}')"
status="$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $4}')"
if [ "$status" != "online" ]; then
  say "starting cluster $version/$cluster on port $port"
  # pg_ctlcluster run by root starts the server as the cluster's owner (postgres).
  pg_ctlcluster "$version" "$cluster" start -o "-c listen_addresses=127.0.0.1" >&2
fi

for _ in $(seq 1 60); do
  if runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p "$port"; then
    break
  fi
  sleep 0.5
done
if ! runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p "$port"; then
  say "the server on 127.0.0.1:$port does not answer; see /var/log/postgresql/"
  exit 1
fi

# Create or update the role (a test-only password). psql's :'var' / %I / %L quote the values.
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -p "$port" -d postgres \
  -v role="$role" -v password="$password" >&2 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password') \gexec
SQL

say "ready: PostgreSQL $version on 127.0.0.1:$port, role $role"
echo "postgresql+psycopg://${role}:${password}@127.0.0.1:${port}/postgres"
