{{/*
Fixed in-container layout; the config file, the Dockerfile and the probes
agree on these.
*/}}
{{- define "jwtauthz.grpcPort" -}}9001{{- end }}
{{- define "jwtauthz.httpPort" -}}9090{{- end }}
{{- define "jwtauthz.keysDir" -}}/etc/jwtauthz/keys{{- end }}
{{- define "jwtauthz.dbPath" -}}/data/jwtauthz.db{{- end }}
{{- define "jwtauthz.authzService" -}}envoy.service.auth.v3.Authorization{{- end }}

{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "jwtauthz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: the release name, plus the chart name
unless the release name already contains it.
*/}}
{{- define "jwtauthz.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "jwtauthz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "jwtauthz.labels" -}}
helm.sh/chart: {{ include "jwtauthz.chart" . }}
{{ include "jwtauthz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jwtauthz
{{- end }}

{{/* Labels that select the pods; never change them after an install. */}}
{{- define "jwtauthz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jwtauthz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the pod runs as. */}}
{{- define "jwtauthz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jwtauthz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (default appVersion). */}}
{{- define "jwtauthz.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The admin API's port, from config.admin.listen ("host:port"), or "". */}}
{{- define "jwtauthz.adminPort" -}}
{{- with .Values.config.admin.listen }}{{ regexFind "[0-9]+$" . }}{{ end }}
{{- end }}

{{/*
Checks across values that values.schema.json cannot express. configmap.yaml,
which every render includes, runs them once.
*/}}
{{- define "jwtauthz.validate" -}}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "\n\nreplicaCount is %d, but jwtauthz keeps its users in a bbolt file (%s) on the pod's volume, and bbolt allows one process per file: each extra replica would get its own empty volume and a separate, diverging user database (and on a shared volume it could not open the file at all). Use one replica (replicaCount: 1). jwtauthz restarts in seconds, and Envoy answers 503 (fail closed) meanwhile; a store that several replicas can share is a separate piece of work." (int .Values.replicaCount) (include "jwtauthz.dbPath" .)) }}
{{- end }}
{{- $minGrace := add (int .Values.drainSeconds) 15 }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $minGrace) }}
{{- fail (printf "\n\nterminationGracePeriodSeconds (%d) must be more than drainSeconds + 15 (%d): after SIGTERM jwtauthz drains for drainSeconds, stops gRPC gracefully (up to 10s) and flushes its store; a shorter grace period kills it mid-flush." (int .Values.terminationGracePeriodSeconds) $minGrace) }}
{{- end }}
{{- $keysDir := include "jwtauthz.keysDir" . }}
{{- $hasKeys := or .Values.keys.secretName .Values.keys.configMapName }}
{{- range $i, $p := .Values.config.providers }}
{{- $files := concat ($p.pem_files | default list) (compact (list ($p.jwks_file | default "") ($p.hmac_secret_file | default "") ($p.claims_schema | default ""))) }}
{{- range $files }}
{{- if not (hasPrefix (printf "%s/" $keysDir) .) }}
{{- fail (printf "\n\nconfig.providers[%d]: %q is outside %s/: files reach the pod only through keys.secretName or keys.configMapName, which are mounted there." $i . $keysDir) }}
{{- end }}
{{- if not $hasKeys }}
{{- fail (printf "\n\nconfig.providers[%d] reads %s, but neither keys.secretName nor keys.configMapName is set, so nothing is mounted at %s." $i . $keysDir) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
