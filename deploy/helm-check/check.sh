#!/usr/bin/env bash
# Render helm/funnelstream without the helm binary and validate the result.
#
#   deploy/helm-check/check.sh [--out DIR] [VALUES_FILE...]
#
# VALUES_FILEs are layered over the chart's values.yaml like `helm template
# -f A -f B` (none: the defaults). Steps:
#
#   1. sync-rules.py --check: the chart's copies of the Prometheus rules and
#      its threshold defaults match deploy/prometheus/ (drift fails here);
#   2. builds helm-render (main.go, Go in GOPATH mode with Debian's sprig and
#      yaml.v2; offline) and renders the chart with the VALUES_FILEs;
#   3. validate.py on the result: values schema, yamllint, kubernetes-validate,
#      CRD structure, `funnelstream check-config` on the ConfigMap's TOML with
#      the container's args, promtool on the PrometheusRule and its equality
#      with deploy/prometheus, and rendered facts;
#   4. the same with only prometheusRule.enabled=true (default thresholds:
#      the chart's rules must equal deploy/prometheus/*.yml exactly);
#   5. negative/*.yaml: values the chart or its schema must refuse (first
#      line `# expect: render|schema: MESSAGE`; a render case may add a
#      second line `# schema: MESSAGE` when the schema refuses it too).
#
# FUNNELSTREAM_BIN names the binary used for check-config (default:
# target/release/funnelstream, else target/debug/funnelstream). Output goes
# to --out DIR (default: a new temporary directory), DIR/render/manifests.
# Exit 0 when everything passes, 1 on a failed check, 3 when a tool is
# missing (the message names the package).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chart="$root/helm/funnelstream"
gopath="${HELM_CHECK_GOPATH:-/usr/share/gocode}"

out=""
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
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

# ---- 0. tools
missing=()
command -v go >/dev/null 2>&1 || missing+=("go: Debian package golang-go")
[ -d "$gopath/src/github.com/Masterminds/sprig" ] || missing+=("sprig: Debian package golang-github-masterminds-sprig-dev")
[ -d "$gopath/src/gopkg.in/yaml.v2" ] || missing+=("yaml.v2: Debian package golang-gopkg-yaml.v2-dev")
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
  echo "install: apt-get install -y golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev prometheus openssl" >&2
  echo "         python3 -m pip install pyyaml jsonschema yamllint kubernetes-validate" >&2
  exit 3
fi

status=0
step() { printf '\n== %s\n' "$*"; }

# ---- 1. rules drift
step "rules drift (sync-rules.py --check)"
python3 "$here/sync-rules.py" --check || exit 1

# ---- 2. renderer
step "build helm-render (Go $(go env GOVERSION), GOPATH mode)"
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
  export GOCACHE="$out/go-build"
fi
GO111MODULE=off GOPATH="$gopath" GOFLAGS="" GOPROXY=off \
  go build -o "$out/helm-render" "$here/main.go"

render() {
  local dir="$1"; shift
  rm -rf "$dir"
  "$out/helm-render" -chart "$chart" -out "$dir" -name funnelstream -namespace default "$@"
}

fargs=()
for f in "${files[@]+"${files[@]}"}"; do fargs+=(-f "$f"); done
step "render with ${files[*]:-the default values}"
render "$out/render" "${fargs[@]+"${fargs[@]}"}"
step "validate"
python3 "$here/validate.py" --out "$out/render" --bin "$bin" || status=1

# ---- 4. default thresholds: the chart's rules are deploy/prometheus' rules
step "render with prometheusRule.enabled only (default thresholds)"
render "$out/rules" -f "$here/rules-values.yaml"
python3 "$here/validate.py" --out "$out/rules" --bin "$bin" || status=1

# ---- 5. values that must be refused
step "negative cases (negative/*.yaml)"
schema_dirs=()
for f in "$here"/negative/*.yaml; do
  name="$(basename "$f" .yaml)"
  expect="$(sed -n '1s/^# expect: //p' "$f")"
  also_schema="$(sed -n '2s/^# schema: //p' "$f")"
  kind="${expect%%: *}"
  msg="${expect#*: }"
  if [ "$kind" = render ]; then
    if err="$(render "$out/negative/$name" -f "$f" 2>&1)"; then
      echo "  FAIL $name: rendered, but must fail with: $msg"; status=1
    elif [[ "$err" != *"$msg"* ]]; then
      echo "  FAIL $name: failed with: $err"; echo "       expected: $msg"; status=1
    else
      echo "  ok   $name: refused when rendering ($msg)"
      if [ -n "$also_schema" ]; then
        # helm-render wrote the merged values before the templates failed.
        printf '%s\n' "$also_schema" >"$out/negative/$name/expect"
        schema_dirs+=("$out/negative/$name")
      fi
    fi
  else
    if ! render "$out/negative/$name" -f "$f" >/dev/null; then
      echo "  FAIL $name: does not render, but must render and fail the schema with: $msg"; status=1
      continue
    fi
    printf '%s\n' "$msg" >"$out/negative/$name/expect"
    schema_dirs+=("$out/negative/$name")
  fi
done
python3 "$here/validate.py" --negative "${schema_dirs[@]}" || status=1

echo
if [ $status -eq 0 ]; then
  echo "check.sh: all checks passed (manifests in $out/render/manifests)"
else
  echo "check.sh: FAILED (output in $out)" >&2
fi
exit $status
