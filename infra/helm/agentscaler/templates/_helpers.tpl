{{/* The chart's name, and the release's full name (at most 63 characters: it names objects and labels). */}}
{{- define "agentscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentscaler.fullname" -}}
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

{{- define "agentscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentscaler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "agentscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agentscaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentscaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
agentscaler.yaml: .Values.config, where a kubernetes pool without kubernetes.namespace gets the release namespace
(agentscaler's own default is "default", where the chart grants no rights).
*/}}
{{- define "agentscaler.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $pools := list }}
{{- range $config.pools }}
{{- if eq (default "docker" .provider) "kubernetes" }}
{{- $k := default (dict) .kubernetes }}
{{- if not $k.namespace }}
{{- $_ := set $k "namespace" $.Release.Namespace }}
{{- end }}
{{- $_ := set . "kubernetes" $k }}
{{- end }}
{{- $pools = append $pools . }}
{{- end }}
{{- $_ := set $config "pools" $pools }}
{{- toYaml $config }}
{{- end }}

{{/* The namespaces the kubernetes pools run their agents in, as a JSON list without repeats. */}}
{{- define "agentscaler.agentNamespaces" -}}
{{- $config := include "agentscaler.config" . | fromYaml }}
{{- $namespaces := list }}
{{- range $config.pools }}
{{- if eq (default "docker" .provider) "kubernetes" }}
{{- $namespaces = append $namespaces .kubernetes.namespace }}
{{- end }}
{{- end }}
{{- $namespaces | uniq | toJson }}
{{- end }}
