#!/usr/bin/env bash
# What users feel: the API server's pod-create latency with vault-secrets-webhook in the path versus
# with no webhook configured, in one run. A real kube-apiserver and etcd (built by
# scripts/go-tools.sh) on loopback ports; N pod creates each way (default 300, one connection,
# one at a time), a 5-container pod with vault: references; p50/p99 printed, then the same pod without
# references and the handler's and the API server's own view of the call. No kubelet: pods are
# admitted and stored, never run. Then, on a real node (scripts/node.sh; NODE=0 skips it), pod
# create -> Ready with and without the webhook.
. "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/install.sh"
bash "$ROOT/scripts/go-tools.sh"
N=${N:-300}
build_webhook_release
B="$STATE/bench-k8s"; rm -rf "$B"; mkdir -p "$B"
trap 'stop_pid "${WH_PID:-}"; stop_pid "${API_PID:-}"; stop_pid "${ETCD_PID:-}"' EXIT

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$B/sa.key" 2>/dev/null
openssl pkey -in "$B/sa.key" -pubout -out "$B/sa.pub"
echo "bench-admin,admin,admin,system:masters" >"$B/tokens.csv"
EC=$(free_port); EP=$(free_port); AP=$(free_port); WP=$(free_port)
"$(tool_path etcd)" --data-dir "$B/etcd" --listen-client-urls "http://127.0.0.1:$EC" --advertise-client-urls "http://127.0.0.1:$EC" \
  --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
  --initial-cluster "default=http://127.0.0.1:$EP" >"$B/etcd.log" 2>&1 & ETCD_PID=$!
"$(tool_path kube-apiserver)" --etcd-servers "http://127.0.0.1:$EC" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --secure-port "$AP" --cert-dir "$B/certs" --service-cluster-ip-range 10.0.0.0/24 \
  --service-account-issuer https://kubernetes.default.svc.cluster.local --service-account-key-file "$B/sa.pub" \
  --service-account-signing-key-file "$B/sa.key" --authorization-mode Node,RBAC --token-auth-file "$B/tokens.csv" \
  >"$B/apiserver.log" 2>&1 & API_PID=$!
API="https://127.0.0.1:$AP"
kcurl() { curl -sS --cacert "$B/certs/apiserver.crt" -H "Authorization: Bearer bench-admin" -H "Content-Type: application/json" "$@"; }
wait_for 60 "kube-apiserver (log: $B/apiserver.log)" kcurl -f "$API/readyz"
kcurl -f -X POST "$API/api/v1/namespaces" -d '{"metadata":{"name":"shop"}}' >/dev/null
kcurl -f -X POST "$API/api/v1/namespaces/shop/serviceaccounts" -d '{"metadata":{"name":"default"}}' >/dev/null

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$B/tls.key" -out "$B/tls.crt" 2>/dev/null
env -i PATH=/usr/bin:/bin LISTEN_ADDRESS="127.0.0.1:$WP" TLS_CERT_FILE="$B/tls.crt" TLS_PRIVATE_KEY_FILE="$B/tls.key" \
  LOG_LEVEL=warn VAULT_ADDR=https://vault.vault:8200 "$WH" >"$B/webhook.log" 2>&1 & WH_PID=$!
wait_for 10 webhook curl -fsk "https://127.0.0.1:$WP/healthz"

# measure LABEL PREFIX: N creates, one connection, printing "LABEL p50 p99" in ms.
measure() {
  python3 - "$API" "$B/certs/apiserver.crt" "$N" "$2" "$1" <<'PY'
import http.client, json, ssl, sys, time, urllib.parse
api, ca, n, prefix, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
import os
refs = os.environ.get("REFS", "1") == "1"   # REFS=0: the same pod without references (no patch)
u = urllib.parse.urlparse(api)
conn = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=ca))
headers = {"Authorization": "Bearer bench-admin", "Content-Type": "application/json"}
def pod(i):
    cs = [{"name": f"c{j}", "image": f"app{j}:1", "command": ["/app"],
           "env": [{"name": "DB_PASSWORD", "value": f"vault:secret/data/app{j}#password" if refs else "plain"}, {"name": "PLAIN", "value": "x"}]} for j in range(5)]
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{prefix}-{i}"}, "spec": {"containers": cs}})
times, mutated = [], 0
for i in range(-10, n):          # 10 warm-up creates
    body = pod(i + 10)
    t = time.perf_counter()
    conn.request("POST", "/api/v1/namespaces/shop/pods", body, headers)
    r = conn.getresponse(); data = r.read()
    dt = (time.perf_counter() - t) * 1000
    if r.status != 201:
        sys.exit(f"create failed: {r.status} {data[:300]!r}")
    if i >= 0:
        times.append(dt)
        mutated += b"/vault/vault-env" in data
times.sort()
print(f"{label:<34} {times[len(times)//2]:8.2f} {times[int(len(times)*0.99)-1]:8.2f}   {mutated}/{n} mutated")
PY
}

echo
echo "kube-apiserver pod creates ($N each, one connection, 5-container pod; this machine)"
echo
printf '%-34s %8s %8s\n' "" "p50 ms" "p99 ms"
measure "no webhook configured" plain | tee "$B/plain.txt"
CA=$(base64 -w0 "$B/tls.crt")
kcurl -f -X POST "$API/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations" -d "{
  \"metadata\": {\"name\": \"vault-secrets-webhook\"},
  \"webhooks\": [{\"name\": \"pods.vault-secrets-webhook.admission.banzaicloud.com\", \"admissionReviewVersions\": [\"v1\"],
    \"sideEffects\": \"NoneOnDryRun\", \"failurePolicy\": \"Fail\", \"timeoutSeconds\": 10,
    \"clientConfig\": {\"url\": \"https://127.0.0.1:$WP/pods\", \"caBundle\": \"$CA\"},
    \"rules\": [{\"operations\": [\"CREATE\"], \"apiGroups\": [\"\"], \"apiVersions\": [\"v1\"], \"resources\": [\"pods\"]}]}]}" >/dev/null
sleep 1   # the API server's informer picks the configuration up
measure "with vault-secrets-webhook" hooked | tee "$B/hooked.txt"
# Where the time goes: the same pod without references (a call, no patch), the webhook's own
# handler time, and the API server's view of the webhook call (its TLS connection, the review
# both ways and our handler).
REFS=0 measure "webhook, a pod without references" noref
avg() { awk -v want="$1" '$1 ~ want"_sum" {s=$2} $1 ~ want"_count" {c=$2} END {if (c) printf "%.3f ms over %d", s/c*1000, c}'; }
echo "the webhook's handler, mutated reviews:  $(curl -sk "https://127.0.0.1:$WP/metrics" | grep 'mutated="true"' | avg review_duration_seconds)"
echo "the API server's webhook call, mean:     $(kcurl "$API/metrics" | grep '^apiserver_admission_webhook_admission_duration_seconds_' | avg apiserver_admission_webhook_admission_duration_seconds)"
python3 - "$B/plain.txt" "$B/hooked.txt" <<'PY'
import sys
p = [float(x) for x in open(sys.argv[1]).read().split()[-4:-2]]
h = [float(x) for x in open(sys.argv[2]).read().split()[-4:-2]]
print(f"\nthe webhook adds {h[0]-p[0]:.2f} ms at p50 and {h[1]-p[1]:.2f} ms at p99 ({h[0]/p[0]:.2f}x, {h[1]/p[1]:.2f}x)")
PY

# --- On a real node (scripts/node.sh): pod create -> Ready, as users feel it. -----------------
# P pods (default 30), created one at a time, each timed from the create call until the API
# server reports it Ready (polled every 20 ms): a hostNetwork busybox pod with no webhook; the
# same pod with a vault: reference through our webhook (the admission call, then the copy init
# container from the image the node has, run to completion before the app starts); and the same
# with the vault-env image pulled from a registry on loopback for every pod
# (VAULT_ENV_PULL_POLICY=Always). Ready is the kubelet's (no probe): the app's container started.
[ "${NODE:-1}" = 1 ] || exit 0
P=${P:-30}
bash "$ROOT/scripts/images.sh" >/dev/null 2>&1 || die "scripts/images.sh failed"
ND="$STATE/bench-node"
stop_node() { bash "$ROOT/scripts/node.sh" down "$ND" 2>/dev/null || true; }
HOOK_PIDS=()
trap 'for p in "${HOOK_PIDS[@]}"; do stop_pid "$p"; done; stop_pid "${BAO_PID:-}"; stop_pid "${REG_PID:-}"; stop_node' EXIT
stop_pid "$WH_PID"; stop_pid "$API_PID"; stop_pid "$ETCD_PID"; WH_PID=; API_PID=; ETCD_PID=
bash "$ROOT/scripts/node.sh" up "$ND" 2>"$B/node.log" || { cat "$B/node.log" >&2; die "the node did not start"; }
# shellcheck disable=SC1091
. "$ND/cluster.env"
nkcurl() { curl -sS --cacert "$CA" -H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json" "$@"; }
start_bao
bao_api POST sys/auth/kubernetes '{"type": "kubernetes"}' >/dev/null
python3 - "$CA" "$ADMIN_TOKEN" "$URL" > "$B/k8s-auth.json" <<'PY'
import json, sys
print(json.dumps({"kubernetes_host": sys.argv[3], "kubernetes_ca_cert": open(sys.argv[1]).read(), "token_reviewer_jwt": sys.argv[2]}))
PY
bao_api POST auth/kubernetes/config "$(cat "$B/k8s-auth.json")" >/dev/null
bao_api POST sys/policies/acl/app '{"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}' >/dev/null
bao_api POST auth/kubernetes/role/default '{"bound_service_account_names": ["default"], "bound_service_account_namespaces": ["*"], "token_policies": ["app"]}' >/dev/null
bao_api POST secret/data/app '{"data": {"password": "bench-pw"}}' >/dev/null
# A registry on loopback holding the vault-env image, which containerd may pull over plain HTTP.
RP=$(free_port)
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' "$B/registry" "$RP" > "$B/registry.yml"
env -i PATH=/usr/bin:/bin docker-registry serve "$B/registry.yml" >"$B/registry.log" 2>&1 & REG_PID=$!
wait_for 15 "docker-registry" curl -fsS "http://127.0.0.1:$RP/v2/"
podman --runtime runc --cgroup-manager=cgroupfs push -q --tls-verify=false localhost/vault-env:test "docker://127.0.0.1:$RP/vault-env:test" >/dev/null
mkdir -p "$ND/containerd/certs.d/127.0.0.1:$RP"
printf 'server = "http://127.0.0.1:%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$RP" "$RP" > "$ND/containerd/certs.d/127.0.0.1:$RP/hosts.toml"
# Our webhook on the host, as the tests run it: one process per namespace it mutates.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$B/node-tls.key" -out "$B/node-tls.crt" 2>/dev/null
NCA=$(base64 -w0 "$B/node-tls.crt")
# hook NAMESPACE VAULT_ENV_IMAGE PULL_POLICY: a webhook process with that vault-env image, which
# the API server calls for NAMESPACE's pods (created here).
hook() {
  local port; port=$(free_port)
  env -i PATH=/usr/bin:/bin LISTEN_ADDRESS="127.0.0.1:$port" TLS_CERT_FILE="$B/node-tls.crt" TLS_PRIVATE_KEY_FILE="$B/node-tls.key" \
    KUBECONFIG="$KUBECONFIG" TLS_CLIENT_CA_FILE="$WEBHOOK_CLIENT_CA" LOG_LEVEL=warn VAULT_ADDR="$VAULT_ADDR" \
    VAULT_ENV_IMAGE="$2" VAULT_ENV_PULL_POLICY="$3" "$WH" >"$B/node-webhook-$1.log" 2>&1 &
  HOOK_PIDS+=($!)
  wait_for 10 webhook curl -fsk "https://127.0.0.1:$port/healthz"
  nkcurl -f -X POST "$URL/api/v1/namespaces" -d "{\"metadata\": {\"name\": \"$1\"}}" >/dev/null
  nkcurl -f -X POST "$URL/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations" -d "{
    \"metadata\": {\"name\": \"$1\"},
    \"webhooks\": [{\"name\": \"pods.vault-secrets-webhook.test\", \"admissionReviewVersions\": [\"v1\"],
      \"sideEffects\": \"NoneOnDryRun\", \"failurePolicy\": \"Fail\", \"timeoutSeconds\": 10,
      \"clientConfig\": {\"url\": \"https://127.0.0.1:$port/pods\", \"caBundle\": \"$NCA\"},
      \"namespaceSelector\": {\"matchLabels\": {\"kubernetes.io/metadata.name\": \"$1\"}},
      \"rules\": [{\"operations\": [\"CREATE\"], \"apiGroups\": [\"\"], \"apiVersions\": [\"v1\"], \"resources\": [\"pods\"]}]}]}" >/dev/null
}
nkcurl -f -X POST "$URL/api/v1/namespaces" -d '{"metadata": {"name": "bench-plain"}}' >/dev/null
hook bench-webhook localhost/vault-env:test Never
# The second one's vault-env image is in the registry, pulled for every pod.
hook bench-pull "127.0.0.1:$RP/vault-env:test" Always
sleep 2   # the API server's informer picks the configurations up

# ready NAMESPACE LABEL REFS: P pods one at a time, create -> Ready; prints "LABEL p50 p99" in ms.
ready() {
  python3 - "$URL" "$CA" "$ADMIN_TOKEN" "$1" "$2" "$3" "$P" <<'PY'
import http.client, json, ssl, sys, time, urllib.parse
api, ca, token, ns, label, refs, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6] == "1", int(sys.argv[7])
u = urllib.parse.urlparse(api)
conn = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=ca))
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def call(method, path, body=None):
    conn.request(method, path, json.dumps(body) if body is not None else None, h)
    r = conn.getresponse(); return r.status, json.loads(r.read() or b"null")
env = [{"name": "PASSWORD", "value": "vault:secret/data/app#password" if refs else "plain"}]
times = []
for i in range(n + 2):           # 2 warm-up pods
    pod = {"metadata": {"name": f"p{i}"}, "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 0, "containers": [{
        "name": "app", "image": "localhost/vault-env-test-base:test", "imagePullPolicy": "Never",
        "command": ["sleep", "3600"], "env": env}]}}
    t = time.perf_counter()
    status, body = call("POST", f"/api/v1/namespaces/{ns}/pods", pod)
    if status != 201:
        sys.exit(f"{label}: create failed: {status} {body}")
    while True:
        status, body = call("GET", f"/api/v1/namespaces/{ns}/pods/p{i}")
        conds = {c["type"]: c["status"] for c in (body.get("status") or {}).get("conditions", [])}
        if conds.get("Ready") == "True":
            break
        if time.perf_counter() - t > 120:
            sys.exit(f"{label}: p{i} not Ready after 120 s: {body.get('status')}")
        time.sleep(0.02)
    if i >= 2:
        times.append((time.perf_counter() - t) * 1000)
    call("DELETE", f"/api/v1/namespaces/{ns}/pods/p{i}")
times.sort()
print(f"{label:<44} {times[len(times)//2]:8.0f} {times[max(0, int(len(times)*0.99)-1)]:8.0f}")
PY
}
echo
echo "a real node: pod create -> Ready ($P pods each, one at a time; hostNetwork busybox; this machine)"
echo
printf '%-44s %8s %8s\n' "" "p50 ms" "p99 ms"
ready bench-plain "no webhook" 0 | tee "$B/node-plain.txt"
ready bench-webhook "through the webhook (a vault: reference)" 1 | tee "$B/node-webhook.txt"
ready bench-pull "same, vault-env image pulled each time" 1 | tee "$B/node-pull.txt"
python3 - "$B/node-plain.txt" "$B/node-webhook.txt" "$B/node-pull.txt" <<'PY'
import sys
p, w, a = ([float(x) for x in open(f).read().split()[-2:]] for f in sys.argv[1:4])
print(f"\ninjection adds {w[0]-p[0]:.0f} ms at p50 ({w[0]/p[0]:.2f}x); pulling the vault-env image adds {a[0]-w[0]:.0f} ms more")
PY
