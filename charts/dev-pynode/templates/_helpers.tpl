{{/* The release's base name. */}}
{{- define "dev-pynode.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on everything. */}}
{{- define "dev-pynode.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret with the secret settings. */}}
{{- define "dev-pynode.secretName" -}}
{{- default (printf "%s-secrets" (include "dev-pynode.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* Non-root, read-only root filesystem, no privilege escalation, no capabilities. */}}
{{- define "dev-pynode.containerSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: ["ALL"]}
  seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* The environment of every devpynode container. */}}
{{- define "dev-pynode.environment" -}}
envFrom:
  - configMapRef:
      name: {{ include "dev-pynode.fullname" . }}-config
  - secretRef:
      name: {{ include "dev-pynode.secretName" . }}
{{- end -}}

{{/* Envoy's tracer (files/envoy*.yaml): the collector of .Values.tracing.endpoint, read as the services read
OTEL_EXPORTER_OTLP_ENDPOINT (port 4317 for gRPC or 4318 for HTTP when the URL names none, /v1/traces added to
its path), and Envoy's share of sampled requests from the sampler values (it starts a browser's trace). */}}
{{- define "dev-pynode.otlpHost" -}}
{{- (split ":" (urlParse .Values.tracing.endpoint).host)._0 -}}
{{- end -}}

{{- define "dev-pynode.otlpPort" -}}
{{- $port := (split ":" (urlParse .Values.tracing.endpoint).host)._1 -}}
{{- $port | default (ternary "4317" "4318" (eq .Values.tracing.protocol "grpc")) -}}
{{- end -}}

{{- define "dev-pynode.otlpPath" -}}
{{- printf "%s/v1/traces" (trimSuffix "/" (urlParse .Values.tracing.endpoint).path) -}}
{{- end -}}

{{- define "dev-pynode.tracePercent" -}}
{{- $sampler := .Values.tracing.sampler | lower -}}
{{- if has $sampler (list "always_off" "parentbased_always_off") -}}
0
{{- else if has $sampler (list "traceidratio" "parentbased_traceidratio") -}}
{{- mulf (float64 (.Values.tracing.samplerArg | default "1")) 100 -}}
{{- else -}}
100
{{- end -}}
{{- end -}}
