#!/usr/bin/env bash
# Start the local services the tests use, if they are down: PostgreSQL (127.0.0.1:5432, trust
# auth, database "test"), Redis and abx's private Docker engine (scripts/dockerd.sh; the tests
# read its socket from /run/abx-docker). Installs nothing when they already answer.
set -u
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_up; then
  if ! ls /etc/postgresql >/dev/null 2>&1; then
    echo "services: installing PostgreSQL" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 || true
  fi
  if ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>/dev/null || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if pg_up; then
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null 2>&1 || true
  echo "services: postgresql up"
else
  echo "services: postgresql NOT available (tests marked postgres will be skipped)" >&2
fi
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
fi
if bash "$(dirname "$0")/dockerd.sh" >/dev/null; then
  echo "services: docker engine up (DOCKER_HOST=unix:///run/abx-docker/docker.sock)"
else
  echo "services: docker engine NOT available (the docker tests will fail)" >&2
fi
exit 0
