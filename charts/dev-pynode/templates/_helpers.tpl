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
