{{/*
The funnelstream TOML config file (keys: the flag names with `_`). Secret
Kafka properties are never part of it: they reach the process as
--kafka-property flags expanded from Secret-backed environment variables.
*/}}
{{- define "funnelstream.toml" -}}
# funnelstream configuration rendered by the {{ include "funnelstream.chart" . }} Helm chart.
# Validate with: funnelstream check-config --config {{ include "funnelstream.configPath" . }}
brokers = {{ include "funnelstream.tomlString" (required "kafka.brokers is required" .Values.kafka.brokers) }}
topics = [{{ range $i, $t := .Values.kafka.topics }}{{ if $i }}, {{ end }}{{ include "funnelstream.tomlString" $t }}{{ end }}]
group = {{ include "funnelstream.tomlString" (required "kafka.group is required" .Values.kafka.group) }}
listen = {{ include "funnelstream.tomlString" (include "funnelstream.listen" .) }}
{{- with .Values.kafka.deadLetterTopic }}
# Rejected events are copied here unchanged, with headers.
dead_letter_topic = {{ include "funnelstream.tomlString" . }}
{{- end }}
{{- with .Values.checkpoint.topic }}
# Each partition's state is checkpointed here and restored on assignment;
# offsets are committed only once a checkpoint covers them.
checkpoint_topic = {{ include "funnelstream.tomlString" . }}
{{- with $.Values.checkpoint.interval }}
checkpoint_interval = {{ include "funnelstream.tomlString" . }}
{{- end }}
{{- with $.Values.checkpoint.policy }}
checkpoint_policy = {{ include "funnelstream.tomlString" . }}
{{- end }}
{{- end }}
{{- if .Values.webConfig.enabled }}
# TLS and basic auth of listen, from the Secret {{ .Values.webConfig.existingSecret }};
# /healthz and /readyz also on probe_listen, plain HTTP, for the kubelet.
web_config_file = {{ include "funnelstream.tomlString" (include "funnelstream.webConfigFile" .) }}
probe_listen = {{ include "funnelstream.tomlString" (include "funnelstream.probeListen" .) }}
{{- end }}
{{- if not (kindIs "invalid" .Values.engine.workers) }}
workers = {{ int64 .Values.engine.workers }}
{{- end }}
log_format = {{ include "funnelstream.tomlString" .Values.logFormat }}
log_level = {{ include "funnelstream.tomlString" .Values.logLevel }}
windows = {{ include "funnelstream.tomlString" (join "," .Values.engine.windows) }}
clock = {{ include "funnelstream.tomlString" .Values.engine.clock }}
max_future_skew = {{ include "funnelstream.tomlString" .Values.engine.maxFutureSkew }}
allowed_lateness = {{ include "funnelstream.tomlString" .Values.engine.allowedLateness }}
dedup_horizon = {{ include "funnelstream.tomlString" .Values.engine.dedupHorizon }}
dedup_capacity = {{ int64 .Values.engine.dedupCapacity }}
max_channels = {{ int64 .Values.engine.maxChannels }}
max_campaigns = {{ int64 .Values.engine.maxCampaigns }}
max_tracked_deals = {{ int64 .Values.engine.maxTrackedDeals }}
max_event_bytes = {{ int64 .Values.engine.maxEventBytes }}
{{- /*
CLI.md v2 settings: written only when not at their defaults, so that an
engine that does not know a key yet (it rejects unknown keys) still accepts
the file while the setting is left alone.
*/}}
{{- with .Values.engine }}
{{- if ne (float64 .grossMargin) 1.0 }}
gross_margin = {{ float64 .grossMargin }}
{{- end }}
{{- with .channelOrigins }}
{{- $pairs := list }}
{{- range $channel, $origin := . }}
{{- $pairs = append $pairs (printf "%s=%s" $channel $origin) }}
{{- end }}
channel_origins = {{ include "funnelstream.tomlString" (join "," $pairs) }}
{{- end }}
{{- if ne (int64 .maxActions) 50 }}
max_actions = {{ int64 .maxActions }}
{{- end }}
{{- if ne (int64 .maxSeries) 200000 }}
max_series = {{ int64 .maxSeries }}
{{- end }}
{{- with .calendarWindows }}
calendar_windows = {{ include "funnelstream.tomlString" (join "," .) }}
{{- end }}
{{- if ne .calendarTimezone "UTC" }}
calendar_timezone = {{ include "funnelstream.tomlString" .calendarTimezone }}
{{- end }}
{{- if ne (int64 .fiscalYearStartMonth) 1 }}
fiscal_year_start_month = {{ int64 .fiscalYearStartMonth }}
{{- end }}
{{- end }}
{{- with .Values.kafka.properties }}

[kafka]
{{- range $k, $v := . }}
{{ include "funnelstream.tomlString" $k }} = {{ include "funnelstream.tomlString" (include "funnelstream.propertyValue" $v) }}
{{- end }}
{{- end }}
{{- end }}
