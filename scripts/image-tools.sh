#!/usr/bin/env bash
# Makes sure the image tier's tools are installed: buildah (builds the Dockerfile without a daemon), podman (runs the
# image), runc (the runtime that also works where crun cannot: hosts with hybrid cgroups, nested sandboxes) and
# mmdebstrap (makes a local Debian base when the registry's base cannot be pulled). On Debian/Ubuntu, as
# root, missing ones are installed with apt-get; elsewhere it says what is missing and fails.
set -euo pipefail
missing=()
for tool in buildah podman mmdebstrap runc; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[image-tools] installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends buildah podman mmdebstrap runc uidmap fuse-overlayfs >&2
  exit 0
fi
echo "[image-tools] missing: ${missing[*]} (install them: apt-get install buildah podman mmdebstrap)" >&2
exit 1
