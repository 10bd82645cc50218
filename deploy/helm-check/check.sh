#!/usr/bin/env bash
# Check helm/funnelstream with the real helm and validate what it renders.
#
#   deploy/helm-check/check.sh [--out DIR] [VALUES_FILE...]
#
# VALUES_FILEs are passed to helm as `-f A -f B` (none: the defaults). Steps:
#
#   1. sync-rules.py --check: the chart's copies of the Prometheus rules and
#      its threshold defaults match deploy/prometheus/ (drift fails here);
#   2. `helm lint --strict` with the VALUES_FILEs;
#   3. `helm template` with the VALUES_FILEs (manifests) and
#      `helm install --dry-run=client -o json` (NOTES.txt, which `helm
#      template` does not render); helm itself checks the values against
#      values.schema.json first;
#   4. validate.py on the result: values schema (again, with Python's
#      jsonschema), yamllint, kubernetes-validate, CRD structure,
#      `funnelstream check-config` on the ConfigMap's TOML with the
#      container's args, promtool on the PrometheusRule and its equality
#      with deploy/prometheus, and rendered facts;
#   5. the same with only prometheusRule.enabled=true (default thresholds:
#      the chart's rules must equal deploy/prometheus/*.yml exactly);
#   6. negative/*.yaml: values helm must refuse (first line
#      `# expect: render|schema: MESSAGE`: `render`, a template's `fail` or
#      `required`; `schema`, values.schema.json; MESSAGE is part of helm's
#      error). A schema case may add a second line `# without schema:
#      MESSAGE` when a template refuses it too (--skip-schema-validation).
#
# helm is $HELM, else the one scripts/helm installs (`scripts/helm install`
# builds it). FUNNELSTREAM_BIN names the binary used for check-config
# (default: target/release/funnelstream, else target/debug/funnelstream).
# Output goes to --out DIR (default: a new temporary directory),
# DIR/render/manifests. Exit 0 when everything passes, 1 on a failed check,
# 3 when a tool is missing (the message names it).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chart="$root/helm/funnelstream"
release=funnelstream
namespace=default

out=""
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    -*) echo "check.sh: unknown option $1" >&2; exit 2 ;;
    *) files+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"); shift ;;
  esac
done
[ -n "$out" ] || out="$(mktemp -d "${TMPDIR:-/tmp}/helm-check.XXXXXX")"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

bin="${FUNNELSTREAM_BIN:-}"
if [ -z "$bin" ]; then
  for b in "$root/target/release/funnelstream" "$root/target/debug/funnelstream"; do
    if [ -x "$b" ]; then bin="$b"; break; fi
  done
fi
helm="${HELM:-$("$root/scripts/helm" path)}"

# ---- 0. tools
missing=()
[ -x "$helm" ] || missing+=("helm ($helm): run scripts/helm install, or set HELM")
command -v python3 >/dev/null 2>&1 || missing+=("python3: Debian package python3")
py_has() { python3 -c "import $1" >/dev/null 2>&1; }
py_has yaml || missing+=("PyYAML: pip install pyyaml")
py_has jsonschema || missing+=("jsonschema: pip install jsonschema")
py_has yamllint || missing+=("yamllint: pip install yamllint")
py_has kubernetes_validate || missing+=("kubernetes-validate: pip install kubernetes-validate")
command -v promtool >/dev/null 2>&1 || missing+=("promtool: Debian package prometheus")
command -v openssl >/dev/null 2>&1 || missing+=("openssl: Debian package openssl")
[ -n "$bin" ] && [ -x "$bin" ] || missing+=("funnelstream binary: cargo build --release (or set FUNNELSTREAM_BIN)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "check.sh: missing tools:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "install: scripts/helm install; apt-get install -y prometheus openssl" >&2
  echo "         python3 -m pip install pyyaml jsonschema yamllint kubernetes-validate" >&2
  exit 3
fi

# helm keeps its own configuration, cache and data here, not in the user's.
export HELM_CONFIG_HOME="$out/helm-home/config" HELM_CACHE_HOME="$out/helm-home/cache" \
  HELM_DATA_HOME="$out/helm-home/data"

status=0
step() { printf '\n== %s\n' "$*"; }

# ---- 1. rules drift
step "rules drift (sync-rules.py --check)"
python3 "$here/sync-rules.py" --check || exit 1

# render DIR [-f FILE]...: DIR/manifests/*.yaml from `helm template`,
# DIR/NOTES.txt from `helm install --dry-run=client`, DIR/values/*.yaml the
# values files in order (validate.py merges them over values.yaml).
render() {
  local dir="$1"; shift
  rm -rf "$dir"
  mkdir -p "$dir/values"
  "$helm" template "$release" "$chart" --namespace "$namespace" "$@" \
    --output-dir "$dir/helm-output" >/dev/null || return 1
  mv "$dir/helm-output/funnelstream/templates" "$dir/manifests"
  rm -rf "$dir/helm-output"
  # helm writes each manifest as "---\n# Source: NAME\n" + the rendered
  # text + "\n": drop that last "\n" it adds, so that yamllint sees the
  # template's own output (a blank line the template leaves still fails).
  python3 - "$dir/manifests" <<'PY'
import pathlib, sys
for p in pathlib.Path(sys.argv[1]).rglob("*.yaml"):
    b = p.read_bytes()
    if b.endswith(b"\n\n"):
        p.write_bytes(b[:-1])
PY
  "$helm" install "$release" "$chart" --namespace "$namespace" "$@" \
    --dry-run=client -o json >"$dir/release.json" || return 1
  python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["info"]["notes"])' \
    <"$dir/release.json" >"$dir/NOTES.txt"
  local i=0 a
  for a in "$@"; do
    case "$a" in -f) ;; *) i=$((i + 1)); cp "$a" "$dir/values/$(printf %02d $i).yaml" ;; esac
  done
}

fargs=()
for f in "${files[@]+"${files[@]}"}"; do fargs+=(-f "$f"); done

# ---- 2. lint
step "helm lint --strict ($("$helm" version --template '{{.Version}}')) with ${files[*]:-the default values}"
"$helm" lint --strict "$chart" --namespace "$namespace" "${fargs[@]+"${fargs[@]}"}" || exit 1

# ---- 3, 4. render and validate
step "helm template with ${files[*]:-the default values}"
render "$out/render" "${fargs[@]+"${fargs[@]}"}" || exit 1
ls "$out/render/manifests"
step "validate"
python3 "$here/validate.py" --out "$out/render" --bin "$bin" || status=1

# ---- 5. default thresholds: the chart's rules are deploy/prometheus' rules
step "render with prometheusRule.enabled only (default thresholds)"
"$helm" lint --strict "$chart" --namespace "$namespace" -f "$here/rules-values.yaml" >/dev/null || status=1
render "$out/rules" -f "$here/rules-values.yaml" || exit 1
python3 "$here/validate.py" --out "$out/rules" --bin "$bin" || status=1

# ---- 6. values that must be refused
step "negative cases (negative/*.yaml)"
schema_error="values don't meet the specifications of the schema"
for f in "$here"/negative/*.yaml; do
  name="$(basename "$f" .yaml)"
  expect="$(sed -n '1s/^# expect: //p' "$f")"
  kind="${expect%%: *}"
  msg="${expect#*: }"
  case "$kind" in render|schema) ;; *) echo "  FAIL $name: first line must be '# expect: render|schema: MESSAGE'"; status=1; continue ;; esac
  if err="$("$helm" template "$release" "$chart" --namespace "$namespace" -f "$f" 2>&1 >/dev/null)"; then
    echo "  FAIL $name: rendered, but must fail ($kind) with: $msg"; status=1
  elif [[ "$err" != *"$msg"* ]]; then
    echo "  FAIL $name: failed with: $err"; echo "       expected ($kind): $msg"; status=1
  elif [ "$kind" = render ] && [[ "$err" == *"$schema_error"* ]]; then
    echo "  FAIL $name: refused by the schema, but must pass it and fail in a template: $err"; status=1
  elif [ "$kind" = schema ] && [[ "$err" != *"$schema_error"* ]]; then
    echo "  FAIL $name: must be refused by values.schema.json, but: $err"; status=1
  else
    echo "  ok   $name: refused by the $kind ($msg)"
  fi
  also="$(sed -n '2s/^# without schema: //p' "$f")"
  [ -n "$also" ] || continue
  if err="$("$helm" template "$release" "$chart" --namespace "$namespace" -f "$f" --skip-schema-validation 2>&1 >/dev/null)"; then
    echo "  FAIL $name: rendered without the schema, but a template must refuse it with: $also"; status=1
  elif [[ "$err" != *"$also"* ]]; then
    echo "  FAIL $name: without the schema failed with: $err"; echo "       expected: $also"; status=1
  else
    echo "  ok   $name: refused by a template too, without the schema ($also)"
  fi
done

echo
if [ $status -eq 0 ]; then
  echo "check.sh: all checks passed (manifests in $out/render/manifests)"
else
  echo "check.sh: FAILED (output in $out)" >&2
fi
exit $status
