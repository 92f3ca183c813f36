#!/usr/bin/env bash
# Renders deploy/vault-secrets-webhook.yaml from the Helm chart (cert-manager variant) with the helm
# that scripts/go-tools.sh builds. `--check`: fail if the committed file differs from the chart's
# rendering (the test command runs this).
. "$(dirname "$0")/lib.sh"
HELM=$(tool_path helm)
[ -x "$HELM" ] || bash "$ROOT/scripts/go-tools.sh"
OUT="$ROOT/deploy/vault-secrets-webhook.yaml"
render() {
  cat <<'HEAD'
# Rendered from deploy/charts/vault-secrets-webhook by scripts/render-deploy.sh:
#   helm template vault-secrets-webhook deploy/charts/vault-secrets-webhook -n vault-infra \
#     --set certificate.useCertManager=true
# (cert-manager issues the serving certificate and injects the caBundle). Do not edit by hand.
HEAD
  (cd "$ROOT" && "$HELM" template vault-secrets-webhook deploy/charts/vault-secrets-webhook -n vault-infra \
    --set certificate.useCertManager=true)
}
if [ "${1:-}" = --check ]; then
  render | diff -u "$OUT" - >&2 || die "deploy/vault-secrets-webhook.yaml is not the chart's rendering: run scripts/render-deploy.sh"
  log "deploy/vault-secrets-webhook.yaml matches the chart"
else
  render > "$OUT"
  log "wrote $OUT"
fi
