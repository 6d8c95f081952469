#!/usr/bin/env bash
# Local stand-ins for the images the project builds FROM and the tests start, made from
# Debian's packages, for a machine where no container registry answers: a bookworm rootfs
# (debootstrap), imported once, then one small image per need. Users with a registry never
# need this: the Dockerfile and compose default to the official images.
#
#   deploy/images/build.sh             # prints the variables that point the build at them
#
# Each image is built only if missing; ORDERBUS_IMAGE_PREFIX names them (orderbus-local).
set -euo pipefail
cd "$(dirname "$0")"
prefix=${ORDERBUS_IMAGE_PREFIX:-orderbus-local}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=$prefix/debian:bookworm

have() { docker image inspect "$1" >/dev/null 2>&1; }
rootfs='' context=''
trap 'rm -rf "$rootfs" "$context"' EXIT

if ! have "$base"; then
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
  tar -C "$rootfs" -c . | docker import - "$base" >&2
fi
context=$(mktemp -d)
cp ./*.Dockerfile "$context/"
mkdir "$context/certs"
cp /usr/local/share/ca-certificates/*.crt "$context/certs/" 2>/dev/null || true
for image in python redis nats rabbitmq; do
  have "$prefix/$image:bookworm" ||
    docker build -q --force-rm --build-arg "BASE_IMAGE=$base" -t "$prefix/$image:bookworm" \
      -f "$context/$image.Dockerfile" "$context" >&2
done
echo "PYTHON_IMAGE=$prefix/python:bookworm"
echo "REDIS_IMAGE=$prefix/redis:bookworm"
echo "NATS_IMAGE=$prefix/nats:bookworm"
echo "RABBITMQ_IMAGE=$prefix/rabbitmq:bookworm"
