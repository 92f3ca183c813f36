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
{{- define "vault-secrets-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ .Values.serviceAccount.name | default (include "vault-secrets-webhook.fullname" .) }}{{- else -}}{{ .Values.serviceAccount.name | default "default" }}{{- end -}}
{{- end -}}
{{/* A label selector: the user's matchLabels and matchExpressions, then the chart's own expressions (.extra). */}}
{{- define "vault-secrets-webhook.selector" -}}
{{- with .selector.matchLabels }}
matchLabels: {{- toYaml . | nindent 2 }}
{{- end }}
matchExpressions:
{{- with .selector.matchExpressions }}{{ toYaml . | nindent 2 }}{{ end }}
{{- range .extra }}
  - key: {{ index . 0 }}
    operator: NotIn
    values: [{{ index . 1 }}]
{{- end }}
{{- end -}}
{{/* One entry of the MutatingWebhookConfiguration: name (and path), kind (the values key of its
     per-kind selectors), failurePolicy, operations, apiGroups, resources, helmOwner (leave out
     owner=helm objects). */}}
{{- define "vault-secrets-webhook.hook" -}}
{{- $v := .root.Values -}}
{{- $kind := index $v .kind | default dict -}}
{{- $nsExtra := list -}}
{{- if $v.ignoreReleaseNamespace }}{{ $nsExtra = append $nsExtra (list "kubernetes.io/metadata.name" .root.Release.Namespace) }}{{ end -}}
{{- $objExtra := list (list "security.banzaicloud.io/mutate" "skip") -}}
{{- if .helmOwner }}{{ $objExtra = prepend $objExtra (list "owner" "helm") }}{{ end -}}
- name: {{ .name }}.{{ .fullname }}.admission.banzaicloud.com
  admissionReviewVersions: {{ toJson $v.admissionReviewVersions }}
  sideEffects: {{ $v.apiSideEffectValue }}
  timeoutSeconds: {{ $v.timeoutSeconds }}
  reinvocationPolicy: {{ $v.reinvocationPolicy }}
  failurePolicy: {{ .failurePolicy }}
  clientConfig:
    {{- if $v.webhookClientConfig.useUrl }}
    url: {{ printf "%s/%s" (trimSuffix "/" $v.webhookClientConfig.url) .name }}
    {{- else }}
    service:
      name: {{ .fullname }}
      namespace: {{ .root.Release.Namespace }}
      path: /{{ .name }}
      port: {{ $v.service.externalPort }}
    {{- end }}
    {{- if .caBundle }}
    caBundle: {{ .caBundle }}
    {{- end }}
  rules:
    - operations: {{ toJson .operations }}
      apiGroups: {{ toJson .apiGroups }}
      apiVersions: ["*"]
      resources: {{ toJson .resources }}
  namespaceSelector:
    {{- include "vault-secrets-webhook.selector" (dict "selector" ($kind.namespaceSelector | default $v.namespaceSelector) "extra" $nsExtra) | trim | nindent 4 }}
  objectSelector:
    {{- include "vault-secrets-webhook.selector" (dict "selector" ($kind.objectSelector | default $v.objectSelector) "extra" $objExtra) | trim | nindent 4 }}
  {{- with ($kind.matchConditions | default $v.matchConditions) }}
  matchConditions: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
