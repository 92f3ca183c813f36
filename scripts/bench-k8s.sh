#!/usr/bin/env bash
# What users feel: the API server's pod-create latency with vault-secrets-webhook in the path versus
# with no webhook configured, in one run. A real kube-apiserver and etcd (built by
# scripts/go-tools.sh) on loopback ports; N pod creates each way (default 300, one connection,
# one at a time), a 5-container pod with vault: references; p50/p99 printed, then the same pod without
# references and the handler's and the API server's own view of the call. No kubelet: pods are
# admitted and stored, never run.
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
