{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "bbe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name alone when it already contains the chart name. */}}
{{- define "bbe.fullname" -}}
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

{{- define "bbe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bbe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bbe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bbe.labels" -}}
helm.sh/chart: {{ include "bbe.chart" . }}
{{ include "bbe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bedrock-batch-exporter
{{- end }}

{{- define "bbe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bbe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bbe.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the web config is mounted, and the file the exporter's config names (server.web_config_file). */}}
{{- define "bbe.webConfigDir" -}}
/etc/bedrock-batch-exporter-web
{{- end }}

{{- define "bbe.webConfigSecret" -}}
{{- default (printf "%s-web-config" (include "bbe.fullname" .)) .Values.webConfig.existingSecret }}
{{- end }}

{{/* HTTP or HTTPS: what the exporter serves (webConfig.tls). */}}
{{- define "bbe.scheme" -}}
{{- if and .Values.webConfig.enabled .Values.webConfig.tls }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* Path of the Prometheus exposition: the config's server.metrics_path, else /metrics. */}}
{{- define "bbe.metricsPath" -}}
{{- dig "server" "metrics_path" "/metrics" .Values.config }}
{{- end }}

{{/* The pod template shared by the Deployment and the sharded StatefulSet. */}}
{{- define "bbe.podTemplate" -}}
metadata:
  labels:
    {{- include "bbe.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A config change changes this hash, so the pods roll and read the new file.
    checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "bbe.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: exporter
      image: {{ include "bbe.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - run
        - --config=/etc/bedrock-batch-exporter/config.yaml
        - --listen-address=:{{ .Values.containerPort }}
        - --log-level={{ .Values.logLevel }}
        - --log-format={{ .Values.logFormat }}
        {{- if .Values.sharding.enabled }}
        - --shard-index=$(SHARD_INDEX)
        - --shard-count={{ .Values.sharding.shards }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or .Values.sharding.enabled .Values.env .Values.extraEnv }}
      env:
        {{- if .Values.sharding.enabled }}
        - name: SHARD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with .Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http-metrics
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: http-metrics
          scheme: {{ include "bbe.scheme" . }}
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http-metrics
          scheme: {{ include "bbe.scheme" . }}
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/bedrock-batch-exporter
          readOnly: true
        {{- if .Values.webConfig.enabled }}
        - name: web-config
          mountPath: {{ include "bbe.webConfigDir" . }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "bbe.fullname" . }}
    {{- if .Values.webConfig.enabled }}
    - name: web-config
      secret:
        secretName: {{ include "bbe.webConfigSecret" . }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The base every runbook_url in files/bedrock-batch.rules.yaml starts with (documented in that file). */}}
{{- define "bbe.runbooksPlaceholder" -}}
https://runbooks.example.invalid/runbooks
{{- end }}

{{/* Where alert runbook links open: runbooks.baseURL, else the exporter's own /runbooks through its Service. */}}
{{- define "bbe.runbooksBaseURL" -}}
{{- if .Values.runbooks.baseURL }}
{{- .Values.runbooks.baseURL | trimSuffix "/" }}
{{- else }}
{{- printf "http://%s.%s.svc:%v/runbooks" (include "bbe.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}
