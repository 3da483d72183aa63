{{/* The chart's name: app.kubernetes.io/name, which the ServiceMonitor makes the job label. */}}
{{- define "codat-freshness-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Objects' names: the release's, or release-chart; the StatefulSet's pods add -<ordinal>. */}}
{{- define "codat-freshness-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "codat-freshness-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codat-freshness-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "codat-freshness-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "codat-freshness-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: codat-freshness-exporter
{{- end }}

{{- define "codat-freshness-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "codat-freshness-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "codat-freshness-exporter.secretName" -}}
{{- default (include "codat-freshness-exporter.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "codat-freshness-exporter.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the pod mounts what the exporter's config names. */}}
{{- define "codat-freshness-exporter.configDir" -}}/etc/codat-freshness-exporter{{- end }}
{{- define "codat-freshness-exporter.secretDir" -}}/run/secrets/codat-freshness-exporter{{- end }}
{{- define "codat-freshness-exporter.stateDir" -}}/var/lib/codat-freshness-exporter{{- end }}

{{/*
The exporter's config.yaml: .Values.config with the keys the chart derives. Each replica's
codat.max_requests_per_minute is its share of the fleet's maxRequestsPerMinute; sharding
follows replicas, each pod taking the ordinal of its name (shard: auto).
*/}}
{{- define "codat-freshness-exporter.config" -}}
{{- $replicas := int .Values.replicas }}
{{- if lt $replicas 1 }}
{{- fail "replicas: at least 1" }}
{{- end }}
{{- $share := div (int .Values.maxRequestsPerMinute) $replicas }}
{{- if lt $share 1 }}
{{- fail (printf "maxRequestsPerMinute: %v shared by %d replicas leaves each less than 1 a minute" .Values.maxRequestsPerMinute $replicas) }}
{{- end }}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- range $key := list "sharding" "state" "webhooks" }}
{{- if hasKey $config $key }}
{{- fail (printf "config.%s: derived by the chart (replicas, persistence, webhooks); set those values instead" $key) }}
{{- end }}
{{- end }}
{{- $codat := get $config "codat" | default dict }}
{{- range $key := list "api_key" "api_key_file" "max_requests_per_minute" }}
{{- if hasKey $codat $key }}
{{- fail (printf "config.codat.%s: derived by the chart (apiKey, existingSecret, maxRequestsPerMinute); set those values instead" $key) }}
{{- end }}
{{- end }}
{{- $_ := set $codat "api_key_file" (printf "%s/api-key" (include "codat-freshness-exporter.secretDir" .)) }}
{{- $_ = set $codat "max_requests_per_minute" $share }}
{{- $_ = set $config "codat" $codat }}
{{- $_ = set $config "sharding" (dict "shards" $replicas "shard" "auto") }}
{{- $_ = set $config "state" (dict "file" (printf "%s/state.json" (include "codat-freshness-exporter.stateDir" .))) }}
{{- if .Values.webhooks.enabled }}
{{- $_ = set $config "webhooks" (dict "enabled" true "secret_file" (printf "%s/webhook-secret" (include "codat-freshness-exporter.secretDir" .)) "listen_address" (printf ":%d" (int .Values.webhooks.port))) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
A file of files/ (the rules, a dashboard) with the links the generator wrote in it
(files/links.yaml) replaced by the ones .Values.links sets. Call with (dict "root" $ "text" …).
*/}}
{{- define "codat-freshness-exporter.linked" -}}
{{- $text := .text }}
{{- $generated := .root.Files.Get "files/links.yaml" | fromYaml }}
{{- $mine := .root.Values.links | default dict }}
{{- range $key := list "statusPage" "grafana" "runbook" }}
{{- $url := get $mine $key | default "" }}
{{- if $url }}
{{- if eq $key "statusPage" }}{{ $url = printf "%s/" (trimSuffix "/" $url) }}{{ end }}
{{- if eq $key "grafana" }}{{ $url = trimSuffix "/" $url }}{{ end }}
{{- $text = replace (get $generated $key) $url $text }}
{{- end }}
{{- end }}
{{- $text }}
{{- end }}
