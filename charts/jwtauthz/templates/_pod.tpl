{{/*
The pod template of both workloads: the StatefulSet (store.backend bolt) and
the Deployment (store.backend etcd). What differs by backend is decided here,
in one place: the store's volumes and mounts, the startup and liveness probes,
and the default anti-affinity.
*/}}
{{- define "jwtauthz.podTemplate" -}}
{{- $etcd := include "jwtauthz.etcd" . }}
{{- $tls := .Values.store.etcd.tls }}
{{- $auth := .Values.store.etcd.auth }}
{{- $keysSecret := include "jwtauthz.keysSecret" . -}}
metadata:
  # No chart version, app version or config checksum here: a change to the
  # pod template restarts every pod, and none of these needs it. jwtauthz
  # reloads its config and key files in place when the kubelet updates
  # their volumes; an image change restarts the pods by itself.
  labels:
    {{- include "jwtauthz.podLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "jwtauthz.serviceAccountName" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  # Longer than the drain (NOT_SERVING while still answering) plus the
  # graceful stop and the store flush; the chart checks it.
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: jwtauthz
      image: {{ include "jwtauthz.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      # The image's entrypoint is `jwtauthz serve`.
      args:
        - --config={{ include "jwtauthz.configDir" . }}/config.yaml
        - --drain={{ .Values.drainSeconds }}s
        - --log-format=json
        - --log-level={{ .Values.logLevel }}
      env:
        # The container's memory limit in bytes (the node's allocatable
        # memory when no limit is set): jwtauthz sets the Go runtime's soft
        # limit (GOMEMLIMIT) to 90% of it, unless GOMEMLIMIT is set.
        - name: JWTAUTHZ_MEMORY_LIMIT
          valueFrom:
            resourceFieldRef:
              resource: limits.memory
              divisor: "1"
        {{- with .Values.tracing }}
        {{- if .enabled }}
        # OpenTelemetry's standard variables; the config's tracing.enabled
        # turns the exporter on.
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- $attrs := "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)" }}
        {{- with .resourceAttributes }}{{ $attrs = printf "%s,%s" $attrs . }}{{ end }}
        - name: OTEL_RESOURCE_ATTRIBUTES
          value: {{ $attrs | quote }}
        {{- with .otlp.endpoint }}
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ . | quote }}
        {{- end }}
        - name: OTEL_EXPORTER_OTLP_PROTOCOL
          value: {{ .otlp.protocol | quote }}
        {{- with .otlp.headersSecret }}
        - name: OTEL_EXPORTER_OTLP_HEADERS
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: headers
        {{- end }}
        {{- with .sampler }}
        - name: OTEL_TRACES_SAMPLER
          value: {{ . | quote }}
        {{- end }}
        {{- with .samplerArg }}
        - name: OTEL_TRACES_SAMPLER_ARG
          value: {{ . | quote }}
        {{- end }}
        {{- with .serviceName }}
        - name: OTEL_SERVICE_NAME
          value: {{ . | quote }}
        {{- end }}
        {{- end }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: grpc
          containerPort: {{ include "jwtauthz.grpcPort" . }}
          protocol: TCP
        - name: http
          containerPort: {{ include "jwtauthz.httpPort" . }}
          protocol: TCP
        {{- with include "jwtauthz.adminPort" . }}
        - name: grpc-admin
          containerPort: {{ . }}
          protocol: TCP
        {{- end }}
      {{- if $etcd }}
      # Readiness follows grpc.health.v1, which is NOT_SERVING until the users
      # are first loaded from etcd (and every provider has a key) and from
      # SIGTERM on. Startup and liveness only ask whether the process runs
      # (GET /healthz): jwtauthz's "" health service reports what readiness
      # does, so a gRPC liveness probe would restart every replica in a loop
      # while etcd is down, which helps nothing; jwtauthz keeps retrying etcd
      # by itself, and once the users are loaded it stays SERVING through an
      # etcd outage (known users are answered from memory).
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      {{- else }}
      # Native gRPC probes (grpc.health.v1). jwtauthz reports SERVING once
      # its store is open and every provider has a key, and NOT_SERVING from
      # SIGTERM on. Startup gates liveness, so liveness never restarts a pod
      # that is still waiting for a JWKS URL; after startup, "" stays SERVING
      # for the life of the process.
      startupProbe:
        grpc:
          port: {{ include "jwtauthz.grpcPort" . }}
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        grpc:
          port: {{ include "jwtauthz.grpcPort" . }}
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      {{- end }}
      readinessProbe:
        grpc:
          port: {{ include "jwtauthz.grpcPort" . }}
          service: {{ include "jwtauthz.authzService" . }}
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        # The whole ConfigMap as a directory, not config.yaml by subPath: the
        # kubelet updates a directory in place (an atomic ..data symlink swap,
        # which jwtauthz watches for), but never a subPath mount.
        - name: config
          mountPath: {{ include "jwtauthz.configDir" . }}
          readOnly: true
        {{- if or $keysSecret .Values.keys.configMapName }}
        - name: keys
          mountPath: {{ include "jwtauthz.keysDir" . }}
          readOnly: true
        {{- end }}
        {{- if $etcd }}
        {{- if $tls.existingSecret }}
        - name: etcd-tls
          mountPath: {{ include "jwtauthz.etcdTLSDir" . }}
          readOnly: true
        {{- end }}
        {{- if $auth.existingSecret }}
        - name: etcd-auth
          mountPath: {{ include "jwtauthz.etcdAuthDir" . }}
          readOnly: true
        {{- end }}
        {{- else }}
        - name: data
          mountPath: /data
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "jwtauthz.fullname" . }}
    {{- if or $keysSecret .Values.keys.configMapName }}
    - name: keys
      projected:
        # Readable by the pod's group (fsGroup), not by other users.
        defaultMode: 0440
        sources:
          {{- with $keysSecret }}
          - secret:
              name: {{ . }}
          {{- end }}
          {{- with .Values.keys.configMapName }}
          - configMap:
              name: {{ . }}
          {{- end }}
    {{- end }}
    {{- if $etcd }}
    {{- if $tls.existingSecret }}
    # Only the keys the config names, under fixed file names; a key missing
    # from the Secret keeps the pod from starting, with an event saying so.
    - name: etcd-tls
      secret:
        secretName: {{ $tls.existingSecret }}
        defaultMode: 0440
        items:
          {{- with $tls.secretKeys.ca }}
          - key: {{ . }}
            path: ca.crt
          {{- end }}
          {{- with $tls.secretKeys.cert }}
          - key: {{ . }}
            path: tls.crt
          {{- end }}
          {{- with $tls.secretKeys.key }}
          - key: {{ . }}
            path: tls.key
          {{- end }}
    {{- end }}
    {{- if $auth.existingSecret }}
    - name: etcd-auth
      secret:
        secretName: {{ $auth.existingSecret }}
        defaultMode: 0440
        items:
          - key: password
            path: password
    {{- end }}
    {{- else if not .Values.persistence.enabled }}
    - name: data
      emptyDir: {}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "jwtauthz.affinity" . | trim }}
  affinity:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
