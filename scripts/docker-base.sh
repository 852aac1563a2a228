#!/usr/bin/env bash
# Build the base image of every abx image once: a Debian bookworm minbase made with debootstrap
# from the machine's own apt mirror and imported with `docker import` (no registry is reachable,
# so `FROM python:...` is impossible and nothing may be pulled). Python comes from Debian
# (bookworm's python3 is 3.11, the project's version); the wheels are installed on top by
# docker/Dockerfile. Idempotent: does nothing when the image exists. ~1-2 min the first time.
#
# Usage: scripts/docker-base.sh [TAG]   (default local/debian:bookworm-py311; needs DOCKER_HOST,
# see scripts/dockerd.sh)
set -euo pipefail
TAG="${1:-local/debian:bookworm-py311}"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "docker-base: $TAG exists"
  exit 0
fi
MIRROR="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
ROOTFS="$(mktemp -d /var/tmp/abx-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "docker-base: debootstrap bookworm from $MIRROR (first time only)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { echo "docker-base: debootstrap failed; see $ROOTFS.log" >&2; tail -n 20 "$ROOTFS.log" >&2; exit 1; }
rm -f "$ROOTFS.log"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
  "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "docker-base: imported $TAG ($(docker image inspect -f '{{.Size}}' "$TAG") bytes)"
