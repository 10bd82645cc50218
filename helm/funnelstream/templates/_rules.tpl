{{/*
The alert rules of deploy/prometheus/alert-rules.yml (copied verbatim to
files/ by deploy/helm-check/sync-rules.py) with the thresholds of
.Values.prometheusRule.thresholds. A tunable value is a literal followed by
a marker comment on its line:

    > 2000  # threshold: cac_max (default 2000)

and, exactly like deploy/prometheus/render-alerts.py --set NAME=VALUE, every
line whose marker names a threshold set to another value has that literal
(a whole token, present once before the marker) replaced, and its marker
becomes `(default 2000; rendered 5000)`. deploy/helm-check/validate.py checks
that the result equals render-alerts.py's output for the same settings.
*/}}
{{- define "funnelstream.alertRulesText" -}}
{{- $thresholds := .Values.prometheusRule.thresholds | default dict }}
{{- $marker := `^(.*?)#\s*threshold:\s*([a-z][a-z0-9_]*)\s*\(default\s+([^;)\s]+)(?:;\s*rendered\s+([^)\s]+))?\)(.*)$` }}
{{- $found := dict }}
{{- $out := list }}
{{- range $line := splitList "\n" (.Files.Get "files/alert-rules.yml") }}
{{- if and (regexMatch $marker $line) (not (hasPrefix "#" (trim $line))) }}
{{- $code := regexReplaceAll $marker $line "${1}" }}
{{- $name := regexReplaceAll $marker $line "${2}" }}
{{- $default := regexReplaceAll $marker $line "${3}" }}
{{- $current := regexReplaceAll $marker $line "${4}" | default $default }}
{{- $rest := regexReplaceAll $marker $line "${5}" }}
{{- $_ := set $found $name true }}
{{- if hasKey $thresholds $name }}
{{- $new := include "funnelstream.thresholdValue" (index $thresholds $name) }}
{{- if ne $new $current }}
{{- $token := printf `(^|[^\w.])%s($|[^\w.]|\.$|\.[^0-9])` (regexQuoteMeta $current) }}
{{- if ne (len (regexFindAll $token $code -1)) 1 }}
{{- fail (printf "files/alert-rules.yml: the value %s of %s is not on its line exactly once: %s" $current $name $line) }}
{{- end }}
{{- $code = regexReplaceAll $token $code (printf "${1}%s${2}" $new) }}
{{- $suffix := ")" }}
{{- if ne $new $default }}{{ $suffix = printf "; rendered %s)" $new }}{{ end }}
{{- $line = printf "%s# threshold: %s (default %s%s%s" $code $name $default $suffix $rest }}
{{- end }}
{{- end }}
{{- end }}
{{- $out = append $out $line }}
{{- end }}
{{- range $name, $_ := $thresholds }}
{{- if not (hasKey $found $name) }}
{{- fail (printf "prometheusRule.thresholds.%s: no such threshold in files/alert-rules.yml" $name) }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
A threshold as render-alerts.py takes it: durations as they are, whole
numbers without exponent (Helm reads YAML numbers as float64).
*/}}
{{- define "funnelstream.thresholdValue" -}}
{{- if kindIs "float64" . }}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
The groups of one rule file, as a list (fails on a YAML error).
*/}}
{{- define "funnelstream.ruleGroups" -}}
{{- $doc := fromYaml .text }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "%s: %s" .name $doc.Error) }}
{{- end }}
{{- toYaml (dict "groups" ($doc.groups | default list)) }}
{{- end }}
