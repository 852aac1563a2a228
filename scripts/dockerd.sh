#!/usr/bin/env bash
# Start abx's private Docker engine if it is not answering, and print `DOCKER_HOST=unix://...`.
#
# Why private: this kind of machine has a docker client but no engine, no registry and no bridge
# networking. Debian's docker.io engine is installed when missing (apt-get, with debootstrap for the
# base image) and started with host networking only (--bridge=none, no iptables). Its data root is
# stable (/var/lib/abx-docker), so the base image and the dependency layers built once survive
# restarts and are reused by tests, CI and `make scale-demo` on this machine. Nothing here pulls.
#
# Idempotent: a second call finds the running engine and only prints DOCKER_HOST. `--stop` stops
# the engine this script started (by its pidfile). Knobs: ABX_DOCKER_ROOT (data root),
# ABX_DOCKER_RUN (socket, pidfile, exec root), ABX_DOCKER_TIMEOUT (seconds to wait, default 90).
set -euo pipefail
ROOT="${ABX_DOCKER_ROOT:-/var/lib/abx-docker}"
RUN="${ABX_DOCKER_RUN:-/run/abx-docker}"
SOCK="$RUN/docker.sock"
PIDFILE="$RUN/dockerd.pid"
LOG="$ROOT/dockerd.log"
TIMEOUT="${ABX_DOCKER_TIMEOUT:-90}"
export DOCKER_HOST="unix://$SOCK"

up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if [ "${1:-}" = "--stop" ]; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    pid="$(cat "$PIDFILE")"
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    echo "dockerd: stopped pid $pid" >&2
  fi
  exit 0
fi

if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null \
   || ! command -v debootstrap >/dev/null; then
  echo "dockerd: installing docker.io and debootstrap (apt-get)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap) \
    >/dev/null 2>&1 || { echo "dockerd: apt-get install docker.io debootstrap failed" >&2; exit 1; }
fi

if ! up; then
  mkdir -p "$ROOT" "$RUN/exec"
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "dockerd: pid $(cat "$PIDFILE") is starting; waiting" >&2
  else
    rm -f "$SOCK" "$PIDFILE"
    echo "dockerd: starting a private engine (data root $ROOT, log $LOG)" >&2
    # setsid: the engine outlives the shell (and the pytest session) that started it.
    setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
      --data-root "$ROOT" --exec-root "$RUN/exec" --pidfile "$PIDFILE" -H "$DOCKER_HOST" \
      >>"$LOG" 2>&1 </dev/null &
  fi
  deadline=$((SECONDS + TIMEOUT))
  until up; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "dockerd: engine not answering on $SOCK after ${TIMEOUT} s; last log lines:" >&2
      tail -n 20 "$LOG" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
fi
echo "DOCKER_HOST=$DOCKER_HOST"
