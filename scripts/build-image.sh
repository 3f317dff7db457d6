#!/usr/bin/env bash
# Builds the agent's image from the Dockerfile with buildah (no Docker daemon needed) and prints its reference.
#   scripts/build-image.sh [TAG]          default TAG: localhost/nodetask-agent:dev
# The base: the Dockerfile's pinned registry image (python:<release>-slim-bookworm@sha256:...) when it can be pulled;
# otherwise a local Debian bookworm base made with mmdebstrap (Debian's own python3.11, from the Debian archive),
# imported as localhost/nodetask-base:bookworm-3 and passed as the BASE build arg (and the same with binutils as
# BUILD_BASE). NODETASK_IMAGE_BASE=local forces the
# local base, NODETASK_IMAGE_BASE=registry forbids it. Whether the registry can be reached is asked once, with a 5 s
# deadline; where it cannot, nothing waits for it.
# Needs buildah, podman and mmdebstrap (Debian: apt-get install buildah podman mmdebstrap), run as root or with
# user namespaces. Labels: org.opencontainers.image.{version,revision,source} from pyproject.toml and git.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/nodetask-agent:dev}
log() { printf '[build-image] %s\n' "$*" >&2; }

for tool in buildah podman; do
  command -v "$tool" >/dev/null || { log "$tool is missing (Debian: apt-get install -y buildah podman mmdebstrap)"; exit 1; }
done

pinned=$(sed -n 's/^ARG BASE=//p' Dockerfile)
base=""
mode=${NODETASK_IMAGE_BASE:-auto}
registry=${NODETASK_IMAGE_REGISTRY:-registry-1.docker.io}
# Whether the registry answers at all, within 5 s: where there is none (a sandbox, an offline CI runner) the build
# goes on with the local base at once instead of waiting for a pull that cannot succeed. Any HTTP answer (the
# registry's 401 included) means it is there.
registry_answers() {
  python3 - "$registry" <<'PY'
import socket, ssl, sys
host = sys.argv[1]
try:
    with socket.create_connection((host, 443), timeout=5) as raw:
        with ssl.create_default_context().wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(5)
            tls.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            sys.exit(0 if tls.recv(12).startswith(b"HTTP/") else 1)
except (OSError, ValueError):
    sys.exit(1)
PY
}
if [ "$mode" != local ] && podman image exists "$pinned" 2>/dev/null; then
  base=$pinned
elif [ "$mode" != local ] && registry_answers && timeout 600 podman pull --quiet "docker.io/library/${pinned}" >/dev/null; then
  # pulled: the pinned digest itself
  base=$pinned
elif [ "$mode" = registry ]; then
  log "cannot pull $pinned from $registry and NODETASK_IMAGE_BASE=registry forbids the local base"; exit 1
else
  # The suffix is the recipe's version: a changed recipe makes new bases. The build stage's base is the same bootstrap
  # plus binutils (to strip the extension modules; this base has no apt to install it with).
  base=localhost/nodetask-base:bookworm-3
  build_base=localhost/nodetask-build-base:bookworm-3
  if ! podman image exists "$base" || ! podman image exists "$build_base"; then
    command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing (Debian: apt-get install -y mmdebstrap)"; exit 1; }
    log "registry base unavailable; making $base and $build_base with mmdebstrap (Debian bookworm, python3.11)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # Essential packages only (no apt, no perl: usr-is-merged stands in for usrmerge), no Recommends, and no
    # documentation, manual pages or translations unpacked (copyright files are kept): a base of about 110 MB.
    bootstrap() {
      mmdebstrap --quiet --variant=essential --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include="usr-is-merged,python3,python3-venv,python-is-python3,ca-certificates$1" \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
        bookworm "$2"
    }
    bootstrap "" "$work/base.tar" & runtime=$!
    bootstrap ",binutils" "$work/build-base.tar" & build=$!
    wait "$runtime" && wait "$build"
    for pair in "$work/base.tar:$base" "$work/build-base.tar:$build_base"; do
      podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "${pair%%:*}" "${pair#*:}" >/dev/null
    done
  fi
fi
build_base=${build_base:-$base}

version=$(python3 -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
source_url=$(git remote get-url origin 2>/dev/null || echo unknown)
# Behind a TLS-intercepting proxy the build's RUN steps (apt, pip) need the host's CA bundle: SSL_CERT_FILE, when set,
# is mounted over the build container's bundle for RUN steps only (it never reaches the image).
ca_mount=()
if [ -n "${SSL_CERT_FILE:-}" ] && [ -r "$SSL_CERT_FILE" ]; then
  ca_mount=(--volume "$SSL_CERT_FILE:/etc/ssl/certs/ca-certificates.crt:ro")
fi
log "building $tag on $base (version $version, revision $revision)"
# chroot isolation: RUN steps need no OCI runtime, cgroups or network namespace, so the build also works inside a
# nested sandbox or a CI container (it runs as root there; the image itself still runs as uid 65532).
buildah build --quiet --layers --isolation chroot "${ca_mount[@]}" \
  --build-arg "BASE=$base" --build-arg "BUILD_BASE=$build_base" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  --build-arg "SOURCE=$source_url" -t "$tag" \
  --label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.source=$source_url" . >&2
# (--label as well as the Dockerfile's ARG-based LABELs: buildah's layer cache may reuse a LABEL layer built with
# another REVISION, while --label always applies to the final image.)
echo "$tag"
