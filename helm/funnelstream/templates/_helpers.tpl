{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "funnelstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the
release name already contains it.
*/}}
{{- define "funnelstream.fullname" -}}
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

{{/*
Chart label value.
*/}}
{{- define "funnelstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "funnelstream.labels" -}}
helm.sh/chart: {{ include "funnelstream.chart" . }}
{{ include "funnelstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: funnelstream
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is
immutable).
*/}}
{{- define "funnelstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "funnelstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "funnelstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "funnelstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference.
*/}}
{{- define "funnelstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Where the config file is mounted, and its path.
*/}}
{{- define "funnelstream.configDir" -}}
/etc/funnelstream
{{- end }}
{{- define "funnelstream.configPath" -}}
{{- include "funnelstream.configDir" . }}/funnelstream.toml
{{- end }}

{{/*
A TOML basic string: JSON string escapes are all valid TOML escapes.
*/}}
{{- define "funnelstream.tomlString" -}}
{{- toJson (toString .) }}
{{- end }}

{{/*
A librdkafka property value as a string: integers without exponent (Helm
reads every YAML number as a float64), booleans as true/false.
*/}}
{{- define "funnelstream.propertyValue" -}}
{{- if kindIs "float64" . }}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
Is a librdkafka property name secret? The same words funnelstream masks
(src/cli.rs is_secret), except file locations and URLs, which are not
secrets themselves.
*/}}
{{- define "funnelstream.isSecretProperty" -}}
{{- $k := lower . }}
{{- if and (regexMatch "password|secret|jaas|ssl\\.key|token|credential" $k) (not (regexMatch "\\.(location|url)$" $k)) }}true{{ end }}
{{- end }}

{{/*
Environment variable carrying one secret Kafka property.
*/}}
{{- define "funnelstream.secretEnvName" -}}
{{- printf "FS_KAFKA_PROP_%s" (regexReplaceAll "[^A-Za-z0-9]" . "_" | upper) }}
{{- end }}

{{/*
HTTP listen address, ADDR:PORT.
*/}}
{{- define "funnelstream.listen" -}}
{{- printf "%s:%d" .Values.listenAddress (int64 .Values.containerPort) }}
{{- end }}

{{/*
Web config (TLS and basic auth of the HTTP port): the file funnelstream
reads, and the plain-HTTP probe listener that the kubelet uses instead.
*/}}
{{- define "funnelstream.webConfigDir" -}}
{{- trimSuffix "/" .Values.webConfig.mountPath }}
{{- end }}
{{- define "funnelstream.webConfigFile" -}}
{{- include "funnelstream.webConfigDir" . }}/web.yml
{{- end }}
{{- define "funnelstream.probeListen" -}}
{{- printf "%s:%d" .Values.listenAddress (int64 .Values.probes.port) }}
{{- end }}

{{/*
Named container port the kubelet probes: the plain probe listener when the
HTTP port is protected.
*/}}
{{- define "funnelstream.probePortName" -}}
{{- if .Values.webConfig.enabled }}probes{{ else }}http{{ end }}
{{- end }}

{{/*
Scheme of the ServiceMonitor's scrape: serviceMonitor.scheme, else https
with webConfig.enabled, else http.
*/}}
{{- define "funnelstream.scrapeScheme" -}}
{{- if .Values.serviceMonitor.scheme }}{{ .Values.serviceMonitor.scheme }}
{{- else if .Values.webConfig.enabled }}https
{{- else }}http
{{- end }}
{{- end }}

{{/*
Consistency of webConfig, probes and the ServiceMonitor's scrape security;
included by deployment.yaml (always rendered). Fails the install.
*/}}
{{- define "funnelstream.validateWebConfig" -}}
{{- $cfgDir := include "funnelstream.configDir" . }}
{{- if .Values.webConfig.enabled }}
{{- $_ := required "webConfig.existingSecret is required with webConfig.enabled: the name of a Secret holding web.yml and the files it references" .Values.webConfig.existingSecret }}
{{- $p := include "funnelstream.webConfigDir" . }}
{{- if or (eq $p $cfgDir) (eq $p (include "funnelstream.configPath" .)) (eq $p "/tmp") (hasPrefix "/tmp/" $p) }}
{{- fail (printf "webConfig.mountPath %s: choose a directory that is not %s (the ConfigMap volume; a subdirectory of it is fine), its config file or /tmp" .Values.webConfig.mountPath $cfgDir) }}
{{- end }}
{{- with .Values.kafka.secretMountPath }}
{{- $k := trimSuffix "/" . }}
{{- if or (eq $p $k) (hasPrefix (printf "%s/" $k) $p) (hasPrefix (printf "%s/" $p) $k) }}
{{- fail (printf "webConfig.mountPath %s and kafka.secretMountPath %s overlap: mount the two Secrets apart" $p $k) }}
{{- end }}
{{- end }}
{{- if eq (int64 .Values.probes.port) (int64 .Values.containerPort) }}
{{- fail (printf "probes.port %d must differ from containerPort: the probe listener is a second, plain-HTTP port" (int64 .Values.probes.port)) }}
{{- end }}
{{- else }}
{{- if eq .Values.serviceMonitor.scheme "https" }}
{{- fail "serviceMonitor.scheme https needs webConfig.enabled (without it funnelstream serves plain HTTP)" }}
{{- end }}
{{- if .Values.serviceMonitor.basicAuth.secretName }}
{{- fail "serviceMonitor.basicAuth.secretName is set but webConfig.enabled is false: funnelstream only checks credentials with a web config" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The dead-letter and checkpoint topics are written by funnelstream: consuming
either would feed its own output back as events. Included by deployment.yaml
(always rendered). Fails the install.
*/}}
{{- define "funnelstream.validateTopics" -}}
{{- $dlt := .Values.kafka.deadLetterTopic | default "" }}
{{- $cpt := .Values.checkpoint.topic | default "" }}
{{- if and $dlt (has $dlt .Values.kafka.topics) }}
{{- fail (printf "kafka.deadLetterTopic %s is one of kafka.topics: rejected events would be consumed again" $dlt) }}
{{- end }}
{{- if and $cpt (has $cpt .Values.kafka.topics) }}
{{- fail (printf "checkpoint.topic %s is one of kafka.topics: checkpoints would be consumed as events" $cpt) }}
{{- end }}
{{- if and $cpt (eq $cpt $dlt) }}
{{- fail (printf "checkpoint.topic and kafka.deadLetterTopic are both %s: use two topics (the checkpoint topic is compacted)" $cpt) }}
{{- end }}
{{- end }}
