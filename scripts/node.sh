#!/usr/bin/env bash
# A one-node Kubernetes cluster on 127.0.0.1 for the end-to-end tests and benchmarks: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet (built from their Go modules
# by scripts/go-tools.sh), Debian's containerd and runc, a loopback-only CNI configuration, and the
# images scripts/images.sh built, imported into containerd (no registry, no pulls).
#
#   node.sh up DIR      start it; DIR/cluster.env then says where it is (URL, CA, KUBECONFIG, ...)
#   node.sh down DIR    stop everything it started (by PID) and remove what it left on the host:
#                       containers, mounts, cgroups, files; restore the kernel settings
#   node.sh serve DIR   up, print "ready", then down when standard input closes (the test fixture
#                       keeps the pipe open for as long as its process lives: even a killed test
#                       run is cleaned up)
#
# One node per machine at a time (the node is named 127.0.0.1 and the kubelet's cgroups and
# kernel settings are the host's): every command holds DIR.lock. `up` first cleans what an earlier
# run that was killed left in DIR. Every listener is on 127.0.0.1; nothing touches iptables.
# Network: hostNetwork pods share the host's (so they reach OpenBao on 127.0.0.1); other pods get a
# bridge segment of their own with no gateway and no route out (see up).
. "$(dirname "$0")/lib.sh"

cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || die "usage: node.sh up|down|serve DIR"
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
# The pods' cgroups, in every hierarchy (removed on down).
CGROUP_ROOT=/vault-env-node
SOCK=$DIR/containerd/containerd.sock
# The pods' network (see up): a bridge of ours, removed on down.
BRIDGE=vaultenv0
POD_SUBNET=10.244.91.0/24
# The images the tests' pods use, as scripts/images.sh tags them.
TAG=${VAULT_ENV_IMAGE_TAG:-test}
IMAGES="localhost/vault-env:$TAG localhost/vault-secrets-webhook:$TAG localhost/vault-env-test-base:$TAG localhost/vault-env-test-pause:$TAG
  localhost/vault-env-test-bao:$TAG localhost/vault-env-test-consul-template:$TAG"
# Kernel settings the kubelet rewrites when it starts (protectKernelDefaults: false).
SYSCTLS="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes"

ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }
kubectl_() { "$(tool_path kubectl)" --kubeconfig "$DIR/admin.kubeconfig" "$@"; }
untainted() { [ -z "$(kubectl_ get node 127.0.0.1 -o jsonpath='{.spec.taints}' 2>/dev/null || echo pending)" ]; }

# started NAME PID EXE: remember a process we started, to stop it by PID.
started() { echo "$1 $2 $3" >> "$DIR/pids"; }

# stop NAME: stop the process recorded as NAME (if it is still the program we started) and wait.
stop() {
  local name pid exe
  [ -f "$DIR/pids" ] || return 0
  while read -r name pid exe; do
    [ "$name" = "$1" ] || continue
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || continue
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done < "$DIR/pids"
}

pki() {
  local p=$DIR/pki
  mkdir -p "$p"; cd "$p"
  o() { openssl "$@" >/dev/null 2>&1 || die "openssl $1 failed"; }
  ca() {
    o req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days 3 -subj "/CN=$1" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  }
  # cert CA NAME SUBJECT EXTENSIONS
  cert() {
    o req -newkey rsa:2048 -nodes -keyout "$2.key" -out "$2.csr" -subj "$3"
    printf '%b\n' "$4" > "$2.ext"
    o x509 -req -in "$2.csr" -CA "$1.crt" -CAkey "$1.key" -CAcreateserial -days 3 -out "$2.crt" -extfile "$2.ext"
  }
  local server="keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth"
  ca ca
  cert ca apiserver /CN=kube-apiserver "$server\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert ca node "/O=system:nodes/CN=system:node:127.0.0.1" "extendedKeyUsage=clientAuth"
  cert ca kubelet /CN=127.0.0.1 "$server\nsubjectAltName=IP:127.0.0.1"
  cert ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  # The client certificate the API server presents to admission webhooks, from a CA of its own
  # (the webhook's TLS_CLIENT_CA_FILE): the chart's advice.
  ca webhook-client-ca
  cert webhook-client-ca webhook-client /CN=kube-apiserver "extendedKeyUsage=clientAuth"
  o genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
  o pkey -in sa.key -pubout -out sa.pub
  ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  echo "$ADMIN_TOKEN,admin,admin,system:masters" > tokens.csv
  cd "$ROOT"
}

kubeconfig() { # kubeconfig FILE USER-YAML
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: node, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$DIR/pki/ca.crt"}}]
users: [{name: user, user: $2}]
contexts: [{name: node, context: {cluster: node, user: user}}]
current-context: node
EOF
}

up() {
  for t in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    [ -x "$(tool_path "$t")" ] || die "$(tool_path "$t") is missing: run scripts/go-tools.sh"
  done
  for i in $IMAGES; do
    podman --runtime runc --cgroup-manager=cgroupfs image exists "$i" || die "image $i is missing: run scripts/images.sh"
  done
  local start=$SECONDS
  rm -rf "$DIR"/*; rm -f "$DIR/pids"
  mkdir -p "$DIR/logs" "$DIR/cni/net.d" "$DIR/containerd" "$DIR/kubelet/root" "$DIR/kubelet/manifests" "$DIR/kubelet/pod-logs" "$DIR/images"
  pki
  read -r ETCD_PORT ETCD_PEER_PORT API_PORT KUBELET_PORT KUBELET_HEALTHZ_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
  kubeconfig "$DIR/admin.kubeconfig" "{token: $ADMIN_TOKEN}"
  kubeconfig "$DIR/node.kubeconfig" "{client-certificate: $DIR/pki/node.crt, client-key: $DIR/pki/node.key}"
  cat > "$DIR/pki/webhook-client.kubeconfig" <<EOF
apiVersion: v1
kind: Config
users: [{name: "*", user: {client-certificate: $DIR/pki/webhook-client.crt, client-key: $DIR/pki/webhook-client.key}}]
EOF
  cat > "$DIR/admission.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration: {apiVersion: apiserver.config.k8s.io/v1, kind: WebhookAdmissionConfiguration, kubeConfigFile: $DIR/pki/webhook-client.kubeconfig}
- name: ValidatingAdmissionWebhook
  configuration: {apiVersion: apiserver.config.k8s.io/v1, kind: WebhookAdmissionConfiguration, kubeConfigFile: $DIR/pki/webhook-client.kubeconfig}
EOF

  # containerd: everything under DIR; its own cgroup in every hierarchy, so the shims it starts
  # are found there if it dies.
  cat > "$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[metrics]
  address = ""
[debug]
  address = ""
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "localhost/vault-env-test-pause:$TAG"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    # Root here may not lower an oom_score_adj (no CAP_SYS_RESOURCE); the kubelet asks for -998.
    restrict_oom_score_adj = true
    # Pod network namespaces under DIR (not /run/netns), so that down finds them.
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$DIR/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$DIR/containerd/certs.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "$DIR/containerd/opt"
EOF
  # Pods that are not hostNetwork get one L2 segment of their own: Debian's bridge plugin with no
  # address on the bridge, no gateway, no masquerading and no route, so they reach each other and
  # nothing else (the host's forwarding and iptables are untouched).
  cat > "$DIR/cni/net.d/10-bridge.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "vault-env-node", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "isDefaultGateway": false, "ipMasq": false, "hairpinMode": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]], "dataDir": "$DIR/cni/ipam"}},
  {"type": "loopback"}]}
EOF
  # Pulls from any registry without a hosts.toml of its own (tests add theirs, on loopback) go to a
  # closed loopback port: an image missing from the node fails to pull without any name lookup or
  # connection leaving the machine.
  mkdir -p "$DIR/containerd/certs.d/_default"
  printf 'server = "http://127.0.0.1:1"\n[host."http://127.0.0.1:1"]\n  capabilities = ["pull", "resolve"]\n' \
    > "$DIR/containerd/certs.d/_default/hosts.toml"
  start_containerd
  # Check that guard, in a network namespace of its own where nothing can leave even if it failed.
  local pull
  pull=$(unshare --net ctr --address "$SOCK" -n k8s.io images pull --hosts-dir "$DIR/containerd/certs.d" registry.invalid/guard:1 2>&1 || true)
  case "$pull" in *"http://127.0.0.1:1/"*) ;; *) die "containerd does not send unknown registries to 127.0.0.1:1: $pull";; esac
  "$(tool_path etcd)" --data-dir="$DIR/etcd" --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster="default=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls= > "$DIR/logs/etcd.log" 2>&1 < /dev/null 9>&- &
  started etcd $! "$(tool_path etcd)"
  local p=$DIR/pki
  "$(tool_path kube-apiserver)" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --service-cluster-ip-range=10.0.0.0/24 --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --token-auth-file="$p/tokens.csv" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --admission-control-config-file="$DIR/admission.yaml" \
    --allow-privileged=true --cert-dir="$DIR/apiserver-certs" > "$DIR/logs/apiserver.log" 2>&1 < /dev/null 9>&- &
  started apiserver $! "$(tool_path kube-apiserver)"
  import_images
  wait_for 60 "kube-apiserver (log: $DIR/logs/apiserver.log)" kubectl_ get --raw /readyz
  log "node: kube-apiserver ready on 127.0.0.1:$API_PORT ($((SECONDS - start)) s)"
  "$(tool_path kube-controller-manager)" --kubeconfig="$DIR/admin.kubeconfig" \
    --authentication-kubeconfig="$DIR/admin.kubeconfig" --authorization-kubeconfig="$DIR/admin.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" --use-service-account-credentials=true \
    > "$DIR/logs/controller-manager.log" 2>&1 < /dev/null 9>&- &
  started controller-manager $! "$(tool_path kube-controller-manager)"
  "$(tool_path kube-scheduler)" --kubeconfig="$DIR/admin.kubeconfig" \
    --authentication-kubeconfig="$DIR/admin.kubeconfig" --authorization-kubeconfig="$DIR/admin.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false > "$DIR/logs/scheduler.log" 2>&1 < /dev/null 9>&- &
  started scheduler $! "$(tool_path kube-scheduler)"

  cat > "$DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $p/kubelet.crt
tlsPrivateKeyFile: $p/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $p/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
staticPodPath: $DIR/kubelet/manifests
podLogsDir: $DIR/kubelet/pod-logs
maxPods: 60
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
EOF
  # The pods' cgroup root, in every hierarchy (cpuset: with the root's CPUs and memory nodes, or
  # nothing could join it).
  local h
  for h in /sys/fs/cgroup/*/; do [ -e "${h}cgroup.procs" ] && mkdir -p "$h${CGROUP_ROOT#/}"; done
  if [ -e /sys/fs/cgroup/cpuset/cpuset.cpus ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus > "/sys/fs/cgroup/cpuset$CGROUP_ROOT/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems > "/sys/fs/cgroup/cpuset$CGROUP_ROOT/cpuset.mems"
  fi
  for k in $SYSCTLS; do echo "$k=$(cat "/proc/sys/$k")"; done > "$DIR/sysctl.orig"
  # The kubelet links container logs into /var/log/containers, creating it if need be.
  [ -d /var/log/containers ] || touch "$DIR/var-log-containers.created"
  "$(tool_path kubelet)" --config="$DIR/kubelet/config.yaml" --kubeconfig="$DIR/node.kubeconfig" \
    --hostname-override=127.0.0.1 --root-dir="$DIR/kubelet/root" --volume-plugin-dir="$DIR/kubelet/volume-plugins" \
    --cert-dir="$DIR/kubelet/pki" --v=2 > "$DIR/logs/kubelet.log" 2>&1 < /dev/null 9>&- &
  started kubelet $! "$(tool_path kubelet)"
  wait_for 60 "the kubelet (log: $DIR/logs/kubelet.log)" curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  sleep 1
  restore_sysctls
  wait_for 120 "the node to be Ready (log: $DIR/logs/kubelet.log)" kubectl_ wait --for=condition=Ready node/127.0.0.1 --timeout=2s
  wait_for 60 "the node-lifecycle controller to untaint the node" untainted
  wait_for 60 "ServiceAccount default and ConfigMap kube-root-ca.crt" kubectl_ get -n default sa/default cm/kube-root-ca.crt
  cat > "$DIR/cluster.env" <<EOF
URL=https://127.0.0.1:$API_PORT
CA=$DIR/pki/ca.crt
KUBECONFIG=$DIR/admin.kubeconfig
ADMIN_TOKEN=$ADMIN_TOKEN
WEBHOOK_CLIENT_CA=$DIR/pki/webhook-client-ca.crt
API_PORT=$API_PORT
EOF
  log "node: Ready on 127.0.0.1 in $((SECONDS - start)) s (logs: $DIR/logs)"
}

# containerd, in a pids cgroup of ours (its shims follow it there, so down finds them by PID even
# if containerd is gone). Only the pids hierarchy: no resource limit of the host is left.
PIDS_CGROUP=/sys/fs/cgroup/pids$CGROUP_ROOT/runtime
start_containerd() {
  (
    if [ -e /sys/fs/cgroup/pids/cgroup.procs ]; then mkdir -p "$PIDS_CGROUP"; echo "$BASHPID" > "$PIDS_CGROUP/cgroup.procs"; fi
    exec containerd --config "$DIR/containerd/config.toml"
  ) > "$DIR/logs/containerd.log" 2>&1 < /dev/null 9>&- &
  started containerd $! "$(readlink -f "$(command -v containerd)")"
  wait_for 30 "containerd (log: $DIR/logs/containerd.log)" ctr --address "$SOCK" version
}

import_images() {
  local i f
  for i in $IMAGES; do
    f="$DIR/images/$(echo "${i#localhost/}" | tr ':/' '__').tar"
    podman --runtime runc --cgroup-manager=cgroupfs save -q --format oci-archive -o "$f" "$i" || die "podman save $i failed"
    ctr_ images import "$f" >/dev/null || die "ctr images import $i failed"
    rm -f "$f"
  done
}

restore_sysctls() {
  [ -f "$DIR/sysctl.orig" ] || return 0
  local k v
  while IFS== read -r k v; do [ "$(cat "/proc/sys/$k")" = "$v" ] || echo "$v" > "/proc/sys/$k"; done < "$DIR/sysctl.orig"
}

down() {
  [ -f "$DIR/pids" ] || [ -d "$DIR/containerd" ] || return 0
  # Best effort from here on: one failed step must not keep the others from running.
  local - start=$SECONDS h c m pids
  set +e
  stop kubelet; stop scheduler; stop controller-manager; stop apiserver; stop etcd
  # Containers: through containerd (started again if it died, so that it finds its shims).
  if [ -d "$DIR/containerd/root" ]; then
    ctr --address "$SOCK" version >/dev/null 2>&1 || start_containerd 2>/dev/null || true
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do
      for _ in $(seq 50); do ctr_ tasks rm -f "$c" >/dev/null 2>&1; ctr_ tasks ls -q 2>/dev/null | grep -qx "$c" || break; sleep 0.1; done
      ctr_ containers rm "$c" >/dev/null 2>&1 || true
    done
  fi
  stop containerd
  # Anything still in our cgroups (a shim whose containerd is gone): by PID, from the cgroup.
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h${CGROUP_ROOT#/}" ] || continue
    for _ in 1 2 3; do
      pids=$(find "$h${CGROUP_ROOT#/}" -name cgroup.procs -exec cat {} + 2>/dev/null)
      [ -n "$pids" ] || break
      kill -9 $pids 2>/dev/null || true; sleep 0.2
    done
    find "$h${CGROUP_ROOT#/}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # Mounts under DIR (the kubelet's root, volumes, containerd's rootfs and shm), innermost first.
  { awk '{print $5}' /proc/self/mountinfo | grep -E "^$DIR/" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  # The kubelet links each container's log into /var/log/containers.
  for l in /var/log/containers/*.log; do
    [ -L "$l" ] && case "$(readlink "$l")" in "$DIR"/*) rm -f "$l";; esac
  done
  [ -f "$DIR/var-log-containers.created" ] && rmdir /var/log/containers 2>/dev/null
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  restore_sysctls
  # The shims' sockets and runc's state live in /run/containerd whatever the configuration says:
  # the directories go if they are empty (ours are, once the shims are gone).
  rmdir /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/s /run/containerd 2>/dev/null
  rm -rf "${DIR:?}"/*
  log "node: down in $((SECONDS - start)) s"
}

# (Every process started here closes fd 9, or it would hold the lock after we exit.)
exec 9>"$DIR.lock"
flock 9
case "$cmd" in
  up) down; up;;
  down) down;;
  serve)
    down
    trap 'down' EXIT
    trap 'exit 0' TERM INT
    up
    echo ready
    exec 1>/dev/null
    # Until the fixture's process is gone (its end of the pipe closes), or TERM.
    exec 8<&0
    cat <&8 > /dev/null &
    wait $!
    ;;
  *) die "usage: node.sh up|down|serve DIR";;
esac
