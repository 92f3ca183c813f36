{{- define "vault-secrets-webhook.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}
{{- define "vault-secrets-webhook.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "vault-secrets-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "vault-secrets-webhook.tlsSecret" -}}
{{- .Values.certificate.servingCertificate | default (printf "%s-tls" (include "vault-secrets-webhook.fullname" .)) -}}
{{- end -}}
{{/* One entry of the MutatingWebhookConfiguration: name (and path), failurePolicy, operations, apiGroups, resources. */}}
{{- define "vault-secrets-webhook.hook" -}}
{{- $v := .root.Values -}}
- name: {{ .name }}.{{ .fullname }}.admission.banzaicloud.com
  admissionReviewVersions: {{ toJson $v.admissionReviewVersions }}
  sideEffects: {{ $v.apiSideEffectValue }}
  timeoutSeconds: {{ $v.timeoutSeconds }}
  reinvocationPolicy: {{ $v.reinvocationPolicy }}
  failurePolicy: {{ .failurePolicy }}
  clientConfig:
    service:
      name: {{ .fullname }}
      namespace: {{ .root.Release.Namespace }}
      path: /{{ .name }}
      port: {{ $v.service.externalPort }}
    {{- if .caBundle }}
    caBundle: {{ .caBundle }}
    {{- end }}
  rules:
    - operations: {{ toJson .operations }}
      apiGroups: {{ toJson .apiGroups }}
      apiVersions: ["*"]
      resources: {{ toJson .resources }}
  namespaceSelector:
    matchExpressions:
      {{- toYaml $v.namespaceSelector.matchExpressions | nindent 6 }}
      {{- if $v.ignoreReleaseNamespace }}
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values: [{{ .root.Release.Namespace }}]
      {{- end }}
  objectSelector:
    matchExpressions:
      {{- with $v.objectSelector.matchExpressions }}{{ toYaml . | nindent 6 }}{{ end }}
      - key: security.banzaicloud.io/mutate
        operator: NotIn
        values: [skip]
  {{- with $v.matchConditions }}
  matchConditions: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
