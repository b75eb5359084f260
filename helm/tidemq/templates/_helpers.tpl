{{/* Names, labels and the pieces both Deployments share. */}}

{{- define "tidemq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tidemq.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tidemq.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tidemq.labels" -}}
helm.sh/chart: {{ include "tidemq.chart" . }}
{{ include "tidemq.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tidemq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidemq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: include "tidemq.componentSelector" (list $ "worker") */}}
{{- define "tidemq.componentSelector" -}}
{{ include "tidemq.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "tidemq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tidemq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tidemq.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* A settings value as the string the environment carries (no 2.68e+08 for big whole numbers). */}}
{{- define "tidemq.envValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{- define "tidemq.redisSecretName" -}}
{{- default (include "tidemq.fullname" .) .Values.redis.existingSecret }}
{{- end }}

{{- define "tidemq.redisSecretKey" -}}
{{- if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}redis-url{{ end }}
{{- end }}

{{- define "tidemq.apiTokenSecretName" -}}
{{- default (include "tidemq.fullname" .) .Values.api.existingSecret }}
{{- end }}

{{- define "tidemq.apiTokenSecretKey" -}}
{{- if .Values.api.existingSecret }}{{ .Values.api.existingSecretKey }}{{ else }}api-token{{ end }}
{{- end }}

{{- define "tidemq.hasApiToken" -}}
{{- if or .Values.api.existingSecret .Values.api.token .Values.config.apiTokenFile }}true{{ end }}
{{- end }}

{{/* What these values serve without authentication (empty: nothing); see config.allowInsecure. */}}
{{- define "tidemq.insecure" -}}
{{- if eq (lower (toString .Values.config.authProvider)) "devonly" }}MQTT with config.authProvider=devonly (every client is let in); {{ end }}
{{- if and .Values.api.enabled (not (include "tidemq.hasApiToken" .)) }}the admin API without api.token, api.existingSecret or config.apiTokenFile; {{ end }}
{{- end }}

{{/* Any listener needing a certificate is on. */}}
{{- define "tidemq.tlsOn" -}}
{{- if or .Values.listeners.tls.enabled .Values.listeners.wss.enabled }}true{{ end }}
{{- end }}

{{- define "tidemq.tlsSecretName" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "tidemq.fullname" .) }}
{{- end }}
{{- end }}

{{/* The CA bundle key in the TLS Secret, empty when client certificates are not verified. */}}
{{- define "tidemq.tlsCAKey" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecretCAKey }}
{{- else if .Values.tls.ca }}
{{- "ca.crt" }}
{{- end }}
{{- end }}

{{/* Checks the schema cannot express; run by every template that depends on them. */}}
{{- define "tidemq.validate" -}}
{{- if and (include "tidemq.tlsOn" .) (not .Values.tls.existingSecret) }}
{{- if not (and .Values.tls.cert .Values.tls.key) }}
{{- fail "listeners.tls / listeners.wss need tls.existingSecret, or both tls.cert and tls.key" }}
{{- end }}
{{- end }}
{{- if and .Values.tls.requireClientCert (not (include "tidemq.tlsCAKey" .)) }}
{{- fail "tls.requireClientCert needs a CA bundle: tls.ca, or tls.existingSecretCAKey" }}
{{- end }}
{{- if and (not .Values.redis.existingSecret) (not .Values.redis.url) }}
{{- fail "set redis.url or redis.existingSecret" }}
{{- end }}
{{- $insecure := include "tidemq.insecure" . }}
{{- if and $insecure (not .Values.config.allowInsecure) }}
{{- fail (printf "refusing to serve %sset config.allowInsecure=true to accept that (development only), or configure authentication (docs/security.md)" $insecure) }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when their configuration changes. */}}
{{- define "tidemq.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* Environment common to workers and API nodes (the ConfigMap comes in through envFrom). */}}
{{- define "tidemq.commonEnv" -}}
- name: TIDEMQ_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "tidemq.redisSecretName" . }}
      key: {{ include "tidemq.redisSecretKey" . }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The preStop hook: keep serving while endpoints and load balancers drop the pod, then SIGTERM. */}}
{{- define "tidemq.preStop" -}}
{{- if gt (int .) 0 -}}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ . }}"]
{{- end }}
{{- end }}
