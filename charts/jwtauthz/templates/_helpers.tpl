{{/*
Fixed in-container layout; the config file, the Dockerfile and the probes
agree on these.
*/}}
{{- define "jwtauthz.grpcPort" -}}9001{{- end }}
{{- define "jwtauthz.httpPort" -}}9090{{- end }}
{{- define "jwtauthz.configDir" -}}/etc/jwtauthz/config{{- end }}
{{- define "jwtauthz.keysDir" -}}/etc/jwtauthz/keys{{- end }}
{{- define "jwtauthz.dbPath" -}}/data/jwtauthz.db{{- end }}
{{- define "jwtauthz.etcdTLSDir" -}}/etc/jwtauthz/etcd-tls{{- end }}
{{- define "jwtauthz.etcdAuthDir" -}}/etc/jwtauthz/etcd-auth{{- end }}
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

{{/* The default of keys.secretName, which the chart mounts only when a provider reads a file. */}}
{{- define "jwtauthz.defaultKeysSecret" -}}jwtauthz-keys{{- end }}

{{/*
The files the providers read from the keys volume, one per line: pem_files,
jwks_file, hmac_secret_file and claims_schema.
*/}}
{{- define "jwtauthz.keyFiles" -}}
{{- range .Values.config.providers }}
{{- range concat (.pem_files | default list) (compact (list (.jwks_file | default "") (.hmac_secret_file | default "") (.claims_schema | default ""))) }}
{{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The key Secret to mount, or "". keys.secretName, except that its default
is not mounted when no provider reads a file (keys from jwks_url or
discovery only): the pod would wait in ContainerCreating for a Secret
nobody made or needs. A Secret named on purpose is mounted as asked.
*/}}
{{- define "jwtauthz.keysSecret" -}}
{{- $name := .Values.keys.secretName }}
{{- if not (and (eq $name (include "jwtauthz.defaultKeysSecret" .)) (not (trim (include "jwtauthz.keyFiles" .)))) }}
{{- $name }}
{{- end }}
{{- end }}

{{/* The headless Service's name: the full name, cut to leave room for "-headless". */}}
{{- define "jwtauthz.headlessName" -}}
{{- printf "%s-headless" (include "jwtauthz.fullname" . | trunc 54 | trimSuffix "-") }}
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

{{/*
Labels of the pod template: the selector labels and what never changes.
Not helm.sh/chart or app.kubernetes.io/version, which change with every
chart or image bump: on the pod template, a changed label restarts every
pod (the image tag restarts them anyway when it changes).
*/}}
{{- define "jwtauthz.podLabels" -}}
{{ include "jwtauthz.selectorLabels" . }}
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

{{/* "true" when the users are in etcd (a Deployment), "" for bolt (a StatefulSet). */}}
{{- define "jwtauthz.etcd" -}}
{{- if eq .Values.store.backend "etcd" }}true{{ end }}
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
{{- if include "jwtauthz.etcd" . }}
{{- include "jwtauthz.validateEtcd" . }}
{{- else }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "\n\nreplicaCount is %d, but with store.backend bolt jwtauthz keeps its users in a bbolt file (%s) on the pod's volume, and bbolt allows one process per file: each extra replica would get its own empty volume and a separate, diverging user database (and on a shared volume it could not open the file at all). Use one replica (replicaCount: 1), which restarts in seconds while Envoy answers 503 (fail closed); or, for several replicas sharing one user registry, set store.backend: etcd and store.etcd.endpoints to an etcd cluster (see the chart README)." (int .Values.replicaCount) (include "jwtauthz.dbPath" .)) }}
{{- end }}
{{- if .Values.store.etcd.endpoints }}
{{- fail "\n\nstore.etcd.endpoints is set, but store.backend is bolt, which keeps the users in a bbolt file and never reads it. Set store.backend: etcd to use etcd, or remove store.etcd.endpoints." }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "\n\nautoscaling.enabled needs store.backend: etcd: with bolt, jwtauthz runs as one pod (bbolt allows one process per file), which an autoscaler cannot scale." }}
{{- end }}
{{- end }}
{{- $minGrace := add (int .Values.drainSeconds) 15 }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $minGrace) }}
{{- fail (printf "\n\nterminationGracePeriodSeconds (%d) must be more than drainSeconds + 15 (%d): after SIGTERM jwtauthz drains for drainSeconds, stops gRPC gracefully (up to 10s) and flushes its store; a shorter grace period kills it mid-flush." (int .Values.terminationGracePeriodSeconds) $minGrace) }}
{{- end }}
{{- with .Values.config.admin }}
{{- if and .listen (not .require_claims) (not .allow_any_verified_token) }}
{{- fail (printf "\n\nconfig.admin.listen is %q, but config.admin.require_claims is empty: every token the providers verify could list, deactivate and activate users. Name a claim the admin's token must hold (e.g. require_claims: {realm_access.roles: jwtauthz-admin}), or set config.admin.allow_any_verified_token: true if every verified token may (jwtauthz refuses the config otherwise)." .listen) }}
{{- end }}
{{- end }}
{{- $keysDir := include "jwtauthz.keysDir" . }}
{{- $hasKeys := or (include "jwtauthz.keysSecret" .) .Values.keys.configMapName }}
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

{{/*
Checks of the etcd values, mirroring what jwtauthz's config loader would
refuse at start (store.etcd.*), so that a mistake fails the install rather
than crash-looping the pods.
*/}}
{{- define "jwtauthz.validateEtcd" -}}
{{- $etcd := .Values.store.etcd }}
{{- if not $etcd.endpoints }}
{{- fail "\n\nstore.backend is etcd, but store.etcd.endpoints is empty: list the client URLs of your etcd cluster's members, e.g. [https://etcd-0.etcd-headless.etcd.svc:2379, https://etcd-1.etcd-headless.etcd.svc:2379, https://etcd-2.etcd-headless.etcd.svc:2379]." }}
{{- end }}
{{- $http := list }}
{{- $https := list }}
{{- range $etcd.endpoints }}
{{- if hasPrefix "http://" . }}{{ $http = append $http . }}{{ end }}
{{- if hasPrefix "https://" . }}{{ $https = append $https . }}{{ end }}
{{- end }}
{{- if and $http $https }}
{{- fail (printf "\n\nstore.etcd.endpoints mixes http:// (%s) and https:// (%s); the etcd client uses one transport for every endpoint." (join ", " $http) (join ", " $https)) }}
{{- end }}
{{- $tls := $etcd.tls }}
{{- if $tls.existingSecret }}
{{- if $http }}
{{- fail (printf "\n\nstore.etcd.tls.existingSecret is set, but store.etcd.endpoints are plain http:// (%s): use https:// URLs for a TLS connection to etcd." (join ", " $http)) }}
{{- end }}
{{- if not (or $tls.secretKeys.ca $tls.secretKeys.cert $tls.secretKeys.key) }}
{{- fail "\n\nstore.etcd.tls.existingSecret is set, but store.etcd.tls.secretKeys names none of its keys (ca, cert, key)." }}
{{- end }}
{{- if ne (empty $tls.secretKeys.cert) (empty $tls.secretKeys.key) }}
{{- fail "\n\nstore.etcd.tls.secretKeys.cert and .key go together (a client certificate and its private key): set both, or both to \"\"." }}
{{- end }}
{{- end }}
{{- $auth := $etcd.auth }}
{{- if and $auth.username (not $auth.existingSecret) }}
{{- fail (printf "\n\nstore.etcd.auth.username is %q, but store.etcd.auth.existingSecret is empty: name the Secret holding that user's password under the key \"password\"." $auth.username) }}
{{- end }}
{{- if and $auth.existingSecret (not $auth.username) }}
{{- fail (printf "\n\nstore.etcd.auth.existingSecret is %q, but store.etcd.auth.username is empty: set the etcd user the password belongs to." $auth.existingSecret) }}
{{- end }}
{{- with .Values.autoscaling }}
{{- if .enabled }}
{{- if gt (int .minReplicas) (int .maxReplicas) }}
{{- fail (printf "\n\nautoscaling.minReplicas (%d) is more than autoscaling.maxReplicas (%d)." (int .minReplicas) (int .maxReplicas)) }}
{{- end }}
{{- if not (dig "requests" "cpu" "" ($.Values.resources | default dict)) }}
{{- fail "\n\nautoscaling.enabled scales on CPU use relative to the CPU request, but resources.requests.cpu is not set." }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The preferred anti-affinity that spreads etcd-backed replicas over nodes,
unless .Values.affinity replaces it. Renders the affinity object, or "".
*/}}
{{- define "jwtauthz.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if include "jwtauthz.etcd" . }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "jwtauthz.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}
