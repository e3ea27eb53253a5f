#!/usr/bin/env bash
# Start the services the test suite talks to when they are not answering, installing them on a
# fresh Debian/Ubuntu machine: Redis (broker, result backend, fleet health) on 127.0.0.1:6379,
# and PostgreSQL (fleet checkpoints) on 127.0.0.1:5432 with the role and database the tests use
# (postgresql://postgres@127.0.0.1:5432/test, trust auth from 127.0.0.1 only). Idempotent.
set -euo pipefail

PG_ROLE="${ORCHESTRA_TEST_PG_ROLE:-postgres}"
PG_DB="${ORCHESTRA_TEST_PG_DB:-test}"

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then echo "need root to install $* (apt-get)" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_up() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\n" >&3 && head -c5 <&3' 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  echo "starting redis-server on 127.0.0.1:6379"
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/orchestra-redis.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "redis did not start" >&2; exit 1; }
fi

pg_up() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432' 2>/dev/null; }
# psql as the cluster's superuser over the local socket (peer auth), whatever pg_hba says of TCP
pg_admin() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }
pg_tcp() { psql "postgresql://$PG_ROLE@127.0.0.1:5432/$PG_DB" -v ON_ERROR_STOP=1 -qtA -c 'select 1' >/dev/null 2>&1; }

if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "installing PostgreSQL"
    apt_install postgresql
  fi
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
  if [ -z "$version" ]; then
    version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    pg_createcluster "$version" main
  fi
  conf="/etc/postgresql/$version/main"
  grep -q "^listen_addresses = '127.0.0.1'" "$conf/postgresql.conf" \
    || echo "listen_addresses = '127.0.0.1'" >>"$conf/postgresql.conf"
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 100); do pg_up && break; sleep 0.1; done
  pg_up || { echo "PostgreSQL did not start" >&2; exit 1; }
fi

command -v psql >/dev/null || apt_install postgresql-client
if ! pg_tcp && command -v runuser >/dev/null && id postgres >/dev/null 2>&1; then
  # the role and database the tests use, then trust for them from 127.0.0.1 (test machines only)
  if [ "$(pg_admin -d postgres -c "select 1 from pg_roles where rolname='$PG_ROLE'")" != 1 ]; then
    pg_admin -d postgres -c "create role $PG_ROLE login superuser"
  fi
  if [ "$(pg_admin -d postgres -c "select 1 from pg_database where datname='$PG_DB'")" != 1 ]; then
    echo "creating database $PG_DB"
    pg_admin -d postgres -c "create database $PG_DB owner $PG_ROLE"
  fi
  if ! pg_tcp; then
    hba="$(pg_admin -d postgres -c 'show hba_file')"
    if ! grep -q "orchestra-tests" "$hba"; then
      echo "PostgreSQL: trust $PG_ROLE@$PG_DB from 127.0.0.1 ($hba)"
      sed -i "1i host $PG_DB $PG_ROLE 127.0.0.1/32 trust  # orchestra-tests" "$hba"
      pg_admin -d postgres -c 'select pg_reload_conf()' >/dev/null
      sleep 0.5
    fi
  fi
fi
pg_tcp || { echo "PostgreSQL: cannot connect to postgresql://$PG_ROLE@127.0.0.1:5432/$PG_DB" >&2; exit 1; }
echo "services: redis up, postgres up (postgresql://$PG_ROLE@127.0.0.1:5432/$PG_DB)"
