#!/usr/bin/env python3
"""Validate what helm rendered (called by check.sh).

    validate.py --out DIR --bin FUNNELSTREAM

DIR holds what check.sh wrote: manifests/*.yaml (`helm template
--output-dir`), NOTES.txt (`helm install --dry-run=client`) and values/*.yaml
(the values files given to helm, in order). Checks, in order:

  1. the merged values (values.yaml with the values files coalesced over it
     as helm does; written to DIR/values.json) against
     helm/funnelstream/values.schema.json (draft-07, Python's jsonschema;
     helm checked them with its own validator before rendering);
  2. yamllint (deploy/helm-check/yamllint.yaml, --strict) on every manifest;
  3. kubernetes-validate --strict, against the oldest and the newest
     Kubernetes its schemas cover, for the built-in kinds;
  4. ServiceMonitor and PrometheusRule (CRDs kubernetes-validate does not
     know): their fields against the Prometheus Operator's v1 API, and that
     the ServiceMonitor selects the Service and one of its named ports;
  5. the ConfigMap's TOML through `funnelstream check-config`, run with the
     container's own args and env (secretKeyRef values replaced by dummies),
     and the effective settings it prints against the values; with
     webConfig.enabled, the Secret's web.yml is made up (a throw-away
     certificate from openssl, a fixed bcrypt hash) in a temporary copy of
     the mount, and web_config_file is pointed at it;
  6. the PrometheusRule: `promtool check rules` on its spec, and equality
     with deploy/prometheus/recording-rules.yml plus alert-rules.yml rendered
     by deploy/prometheus/render-alerts.py with the same thresholds;
  7. rendered facts: probe paths and ports, the web-config mount, security
     contexts, labels and selectors, no secret in the ConfigMap, NOTES.txt.

Exit 0 when everything passes; otherwise every failure is printed and the
exit status is 1.
"""

import argparse
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CHART = os.path.join(ROOT, "helm", "funnelstream")
PROM = os.path.join(ROOT, "deploy", "prometheus")
BUILTIN_GROUPS = {"v1", "apps/v1", "policy/v1"}
SECRET_WORDS = re.compile(r"password|secret|jaas|ssl\.key|token|credential", re.I)

failures = []


def fail(msg):
    failures.append(msg)
    print(f"  FAIL {msg}")


def ok(msg):
    print(f"  ok   {msg}")


def check(cond, msg):
    (ok if cond else fail)(msg)
    return cond


def is_secret_property(key):
    """The chart's rule (funnelstream's is_secret, minus file locations and URLs)."""
    return bool(SECRET_WORDS.search(key)) and not re.search(r"\.(location|url)$", key, re.I)


def load_docs(out):
    docs = []
    for path in sorted(glob.glob(os.path.join(out, "manifests", "**", "*.yaml"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc, text))
    return docs


def schema_errors(values):
    with open(os.path.join(CHART, "values.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    v = jsonschema.Draft7Validator(schema)
    return sorted(v.iter_errors(values), key=lambda e: list(e.absolute_path))


def merge_values(base, over):
    """Helm's merge of values files given in order: maps merge, later wins."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_values(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def coalesce(user, defaults):
    """Helm's coalescing of the user's values with the chart's: the user's win,
    maps merge, a user null deletes the default."""
    out = {}
    for k in set(defaults) | set(user):
        if k not in user:
            v = defaults[k]
        elif user[k] is None:
            continue
        elif isinstance(user[k], dict) and isinstance(defaults.get(k), dict):
            v = coalesce(user[k], defaults[k])
        else:
            v = user[k]
        out[k] = drop_nulls(v)
    return out


def drop_nulls(v):
    if isinstance(v, dict):
        return {k: drop_nulls(x) for k, x in v.items() if x is not None}
    return v


def merged_values(out):
    with open(os.path.join(CHART, "values.yaml"), encoding="utf-8") as f:
        defaults = yaml.safe_load(f) or {}
    user = {}
    for path in sorted(glob.glob(os.path.join(out, "values", "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            user = merge_values(user, yaml.safe_load(f) or {})
    values = coalesce(user, defaults)
    with open(os.path.join(out, "values.json"), "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write("\n")
    return values


def check_schema(out):
    print("values.schema.json")
    values = merged_values(out)
    errs = schema_errors(values)
    for e in errs:
        fail(f"values.{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}")
    if not errs:
        ok("merged values valid (draft-07)")
    return values


def check_yamllint(out):
    print("yamllint")
    files = sorted(glob.glob(os.path.join(out, "manifests", "**", "*.yaml"), recursive=True))
    files += [os.path.join(CHART, n) for n in ("Chart.yaml", "values.yaml")]
    files += sorted(glob.glob(os.path.join(CHART, "ci", "*.yaml")))
    r = subprocess.run([sys.executable, "-m", "yamllint", "--strict", "-f", "parsable",
                        "-c", os.path.join(HERE, "yamllint.yaml"), *files],
                       capture_output=True, text=True)
    if r.returncode != 0:
        for line in (r.stdout + r.stderr).strip().splitlines():
            fail(line)
    else:
        ok(f"{len(files)} files clean (strict)")


def check_kubernetes(docs):
    import kubernetes_validate
    from kubernetes_validate import utils as kvu
    versions = kvu.all_versions()
    targets = sorted({versions[0], versions[-1]}, key=lambda v: [int(x) for x in v.split(".")])
    print(f"kubernetes-validate --strict (Kubernetes {', '.join(targets)})")
    for path, doc, _ in docs:
        if doc.get("apiVersion") not in BUILTIN_GROUPS:
            continue
        for v in targets:
            try:
                kubernetes_validate.validate(doc, v, strict=True)
                ok(f"{doc['kind']} {doc['metadata']['name']} valid for {v}")
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                fail(f"{os.path.basename(path)}: {doc['kind']} for {v}: {where}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                fail(f"{os.path.basename(path)}: {e.message}")


# Fields of the Prometheus Operator's monitoring.coreos.com/v1 API that this
# chart may emit (a subset of the CRDs; anything else is a typo).
SM_SPEC = {"jobLabel", "targetLabels", "podTargetLabels", "endpoints", "selector",
           "namespaceSelector", "sampleLimit", "scrapeProtocols", "targetLimit",
           "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
           "attachMetadata", "scrapeClass", "bodySizeLimit"}
SM_ENDPOINT = {"port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
               "tlsConfig", "bearerTokenFile", "bearerTokenSecret", "authorization",
               "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "basicAuth",
               "oauth2", "metricRelabelings", "relabelings", "proxyUrl", "followRedirects",
               "enableHttp2", "filterRunning"}
SM_TLS = {"ca", "cert", "keySecret", "serverName", "insecureSkipVerify", "minVersion", "maxVersion",
          "caFile", "certFile", "keyFile"}
RELABEL = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}
RELABEL_ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                   "lowercase", "uppercase", "keepequal", "dropequal"}
RULE_GROUP = {"name", "interval", "rules", "partial_response_strategy", "limit", "query_offset", "labels"}
RULE = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def seconds(d):
    units = {"y": 31536000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|y|w|d|h|m|s)", d))


def check_metadata(kind, meta, labels_expected):
    check(set(meta) <= {"name", "namespace", "labels", "annotations"}, f"{kind}: metadata fields known")
    for k, v in (meta.get("labels") or {}).items():
        if not isinstance(v, str):
            fail(f"{kind}: label {k} is not a string")
    for k, v in labels_expected.items():
        check((meta.get("labels") or {}).get(k) == v, f"{kind}: label {k}={v}")


def check_crds(docs, values):
    print("ServiceMonitor / PrometheusRule (monitoring.coreos.com/v1, structural)")
    by_kind = {d["kind"]: d for _, d, _ in docs}
    svc = by_kind.get("Service")
    sm = by_kind.get("ServiceMonitor")
    if values["serviceMonitor"]["enabled"]:
        if check(sm is not None, "ServiceMonitor rendered"):
            check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
            check_metadata("ServiceMonitor", sm["metadata"], values["serviceMonitor"].get("additionalLabels") or {})
            spec = sm["spec"]
            check(set(spec) <= SM_SPEC, f"ServiceMonitor spec fields known: {sorted(set(spec) - SM_SPEC)}")
            sel = spec["selector"]["matchLabels"]
            svc_labels = svc["metadata"]["labels"]
            check(all(svc_labels.get(k) == v for k, v in sel.items()), "ServiceMonitor selector matches the Service's labels")
            check(spec.get("namespaceSelector", {}).get("matchNames") == [svc["metadata"]["namespace"]],
                  "ServiceMonitor namespaceSelector is the Service's namespace")
            port_names = {p["name"] for p in svc["spec"]["ports"]}
            for ep in spec["endpoints"]:
                check(set(ep) <= SM_ENDPOINT, f"endpoint fields known: {sorted(set(ep) - SM_ENDPOINT)}")
                check(ep.get("port") in port_names, f"endpoint port {ep.get('port')} is a named Service port")
                check(ep.get("path") == "/metrics", "endpoint path /metrics")
                check_scrape_security(ep, values)
                iv, to = ep.get("interval", "30s"), ep.get("scrapeTimeout", "10s")
                check(DURATION.match(iv) and DURATION.match(to), f"interval {iv} / scrapeTimeout {to} are durations")
                check(seconds(to) <= seconds(iv), "scrapeTimeout <= interval")
                for r in (ep.get("relabelings") or []) + (ep.get("metricRelabelings") or []):
                    check(set(r) <= RELABEL and r.get("action", "replace").lower() in RELABEL_ACTIONS,
                          f"relabeling {r} well-formed")
    else:
        check(sm is None, "no ServiceMonitor when disabled")

    pr = by_kind.get("PrometheusRule")
    if values["prometheusRule"]["enabled"]:
        if check(pr is not None, "PrometheusRule rendered"):
            check(pr["apiVersion"] == "monitoring.coreos.com/v1", "PrometheusRule apiVersion")
            check_metadata("PrometheusRule", pr["metadata"], values["prometheusRule"].get("additionalLabels") or {})
            check(set(pr["spec"]) == {"groups"}, "PrometheusRule spec has groups only")
            names = [g.get("name") for g in pr["spec"]["groups"]]
            check(len(names) == len(set(names)), "rule group names unique")
            for g in pr["spec"]["groups"]:
                check(set(g) <= RULE_GROUP, f"group {g.get('name')} fields known")
                for r in g.get("rules", []):
                    good = (set(r) <= RULE and ("record" in r) != ("alert" in r)
                            and isinstance(r.get("expr"), str)
                            and all(isinstance(v, str) for v in (r.get("labels") or {}).values())
                            and all(isinstance(v, str) for v in (r.get("annotations") or {}).values())
                            and all(LABEL_NAME.match(k) for k in (r.get("labels") or {})))
                    if not good:
                        fail(f"rule {r.get('record') or r.get('alert')} malformed")
            ok(f"{sum(len(g.get('rules', [])) for g in pr['spec']['groups'])} rules well-formed")
    else:
        check(pr is None, "no PrometheusRule when disabled")
    return pr


def key_ref(ref):
    """A Secret/ConfigMap key selector: {name, key[, optional]}, strings."""
    return (isinstance(ref, dict) and set(ref) <= {"name", "key", "optional"}
            and isinstance(ref.get("name"), str) and ref["name"] != ""
            and isinstance(ref.get("key"), str) and ref["key"] != "")


def check_scrape_security(ep, values):
    """scheme, tlsConfig and basicAuth of a ServiceMonitor endpoint."""
    web = values["webConfig"]["enabled"]
    sm = values["serviceMonitor"]
    want = sm.get("scheme") or ("https" if web else "http")
    check(ep.get("scheme") == want, f"endpoint scheme {want} (webConfig.enabled={web}, serviceMonitor.scheme={sm.get('scheme')!r})")
    tls = ep.get("tlsConfig")
    if want == "https":
        if check(isinstance(tls, dict), "endpoint tlsConfig with https"):
            check(set(tls) <= SM_TLS, f"tlsConfig fields known: {sorted(set(tls) - SM_TLS)}")
            check(tls == sm["tlsConfig"], "tlsConfig == serviceMonitor.tlsConfig")
            check(tls.get("insecureSkipVerify", False) is (sm["tlsConfig"].get("insecureSkipVerify") is True),
                  f"insecureSkipVerify {tls.get('insecureSkipVerify', False)} as in the values")
            for k in ("ca", "cert"):
                if k in tls:
                    src = tls[k]
                    check(isinstance(src, dict) and len(src) == 1 and set(src) <= {"secret", "configMap"}
                          and all(key_ref(v) for v in src.values()), f"tlsConfig.{k}: one secret or configMap key")
            if "keySecret" in tls:
                check(key_ref(tls["keySecret"]), "tlsConfig.keySecret: a Secret key")
    else:
        check(tls is None, "no tlsConfig with http")
    ba = ep.get("basicAuth")
    name = sm["basicAuth"]["secretName"]
    if name:
        check(web, "basicAuth only with webConfig.enabled")
        check(isinstance(ba, dict) and set(ba) == {"username", "password"}
              and ba["username"] == {"name": name, "key": sm["basicAuth"]["usernameKey"]}
              and ba["password"] == {"name": name, "key": sm["basicAuth"]["passwordKey"]},
              f"basicAuth username/password from the Secret {name}")
    else:
        check(ba is None, "no basicAuth without serviceMonitor.basicAuth.secretName")


def load_render_alerts():
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location("render_alerts", os.path.join(PROM, "render-alerts.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def threshold_string(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
        return str(int(v))
    return str(v)


def check_rules(pr, values, tmp):
    print("PrometheusRule rules (promtool, and equality with deploy/prometheus)")
    rule_file = os.path.join(tmp, "prometheusrule-spec.yml")
    with open(rule_file, "w", encoding="utf-8") as f:
        yaml.safe_dump(pr["spec"], f, sort_keys=False)
    r = subprocess.run(["promtool", "check", "rules", rule_file], capture_output=True, text=True)
    if r.returncode != 0:
        fail("promtool check rules: " + (r.stdout + r.stderr).strip())
    else:
        ok("promtool check rules: " + " ".join(r.stdout.split()[-4:]))

    ra = load_render_alerts()
    with open(os.path.join(PROM, "alert-rules.yml"), encoding="utf-8") as f:
        alerts_src = f.read()
    with open(os.path.join(PROM, "recording-rules.yml"), encoding="utf-8") as f:
        recording = yaml.safe_load(f)
    settings = {k: threshold_string(v) for k, v in (values["prometheusRule"].get("thresholds") or {}).items()}
    try:
        expected_alerts = yaml.safe_load(ra.render(alerts_src, settings))
    except ra.RenderError as e:
        fail(f"render-alerts.py refuses the chart's thresholds: {e}")
        return
    expected = recording["groups"] + expected_alerts["groups"]
    got = pr["spec"]["groups"]
    if got == expected:
        changed = {k: v for k, v in settings.items()
                   if v != ra.scan(alerts_src.splitlines(keepends=True))[k]["default"]}
        ok(f"rules == deploy/prometheus/recording-rules.yml + render-alerts.py --set {changed or '(defaults)'}")
    else:
        fail("the chart's rules differ from deploy/prometheus (run deploy/helm-check/sync-rules.py):")
        for i, (a, b) in enumerate(zip(got, expected)):
            if a != b:
                for ra_, rb in zip(a.get("rules", []), b.get("rules", [])):
                    if ra_ != rb:
                        print(f"       chart: {json.dumps(ra_)[:400]}\n       want:  {json.dumps(rb)[:400]}")
                        break
                break
        if len(got) != len(expected):
            print(f"       {len(got)} groups rendered, {len(expected)} expected")


# The made-up web.yml's user: a bcrypt hash (cost 4) of "helm-check".
# check-config validates the hash's form, it never needs the password.
FAKE_USER = "prometheus"
FAKE_HASH = "$2b$04$ZglgJrEYQpZ8Fa6LR7AIY.pI3fBUR9IKoE7AdGzEDTwr/PDlIHAhS"


def fake_web_secret(d, tls):
    """What webConfig.existingSecret would hold, in directory d: web.yml with
    basic_auth_users and (tls) a throw-away self-signed P-256 certificate
    tls.crt/tls.key, referenced relative to web.yml as in the mounted Secret,
    with ca.crt (a copy) as client CA."""
    os.makedirs(d, exist_ok=True)
    web = ""
    if tls:
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "1", "-subj", "/CN=funnelstream.default.svc",
                            "-addext", "subjectAltName=DNS:funnelstream.default.svc",
                            "-keyout", "tls.key", "-out", "tls.crt"], cwd=d, capture_output=True, text=True)
        if r.returncode != 0:
            fail("openssl req (throw-away certificate): " + r.stderr.strip())
        with open(os.path.join(d, "tls.crt"), encoding="utf-8") as src, \
                open(os.path.join(d, "ca.crt"), "w", encoding="utf-8") as dst:
            dst.write(src.read())
        web += ("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
                "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  min_version: TLS12\n")
    web += f"basic_auth_users:\n  {FAKE_USER}: {FAKE_HASH}\n"
    with open(os.path.join(d, "web.yml"), "w", encoding="utf-8") as f:
        f.write(web)


def expand(s, env):
    """Kubernetes' $(VAR) expansion in args ($$ escapes)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)


def check_config_and_facts(docs, values, binary, tmp, notes):
    by_kind = {d["kind"]: d for _, d, _ in docs}
    cm, dep, svc = by_kind.get("ConfigMap"), by_kind.get("Deployment"), by_kind.get("Service")
    print("rendered facts")
    if not (check(cm is not None, "ConfigMap rendered") and check(dep is not None, "Deployment rendered")
            and check(svc is not None, "Service rendered")):
        return
    toml_text = cm["data"]["funnelstream.toml"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]

    # Labels and selectors.
    sel = dep["spec"]["selector"]["matchLabels"]
    tpl_labels = dep["spec"]["template"]["metadata"]["labels"]
    check(set(sel) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}, "selector: name + instance labels")
    check(all(tpl_labels.get(k) == v for k, v in sel.items()), "pod labels match the Deployment selector")
    check(svc["spec"]["selector"] == sel, "Service selector == Deployment selector")
    for _, d, _ in docs:
        labels = d["metadata"].get("labels") or {}
        need = {"helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}
        check(need <= set(labels), f"{d['kind']}: standard labels")
        check(d["metadata"].get("namespace") == "default", f"{d['kind']}: namespaced")
    pdb = by_kind.get("PodDisruptionBudget")
    if values["podDisruptionBudget"]["enabled"]:
        if check(pdb is not None, "PodDisruptionBudget rendered"):
            check(pdb["spec"]["selector"]["matchLabels"] == sel, "PDB selector == Deployment selector")
            check(len({"minAvailable", "maxUnavailable"} & set(pdb["spec"])) == 1, "PDB sets one of min/max")
    else:
        check(pdb is None, "no PodDisruptionBudget when disabled")
    check(dep["spec"]["replicas"] == values["replicaCount"], f"replicas {values['replicaCount']}")

    # Probes and ports.
    port = values["containerPort"]
    check([p["containerPort"] for p in c["ports"] if p["name"] == "http"] == [port], f"container port http={port}")
    check(svc["spec"]["ports"][0]["targetPort"] == "http" and svc["spec"]["ports"][0]["port"] == values["service"]["port"],
          "Service port -> http")
    web = values["webConfig"]
    probe_port = "probes" if web["enabled"] else "http"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if web["enabled"]:
        check(ports == {"http": port, "probes": values["probes"]["port"]},
              f"container ports http={port}, probes={values['probes']['port']}")
    else:
        check(set(ports) == {"http"}, "no probes port without webConfig")
    check([p["targetPort"] for p in svc["spec"]["ports"]] == ["http"], "the Service exposes the http port only")
    check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": probe_port}, f"liveness GET /healthz on {probe_port}")
    check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": probe_port}, f"readiness GET /readyz on {probe_port}")
    if values["startupProbe"]["enabled"]:
        check(c.get("startupProbe", {}).get("httpGet") == {"path": "/healthz", "port": probe_port},
              f"startup GET /healthz on {probe_port}")
    else:
        check("startupProbe" not in c, "no startupProbe when disabled")

    # Security.
    psc, sc = pod["securityContext"], c["securityContext"]
    check(psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is True, "runAsNonRoot")
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is False, "no service account token")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    check("emptyDir" in vols.get(mounts.get("/tmp"), {}), "/tmp is an emptyDir")
    web_mount = web["mountPath"].rstrip("/")
    web_vols = [m for m in c["volumeMounts"]
                if vols[m["name"]].get("secret", {}).get("secretName") == web["existingSecret"] and web["existingSecret"]]
    if web["enabled"]:
        check(len(web_vols) == 1 and web_vols[0]["mountPath"] == web_mount and web_vols[0].get("readOnly") is True,
              f"Secret {web['existingSecret']} mounted read-only at {web_mount}")
    else:
        check("web-config" not in vols, "no web-config volume without webConfig")
    check(re.fullmatch(r"[0-9a-f]{64}", dep["spec"]["template"]["metadata"]["annotations"].get("checksum/config", "")) is not None,
          "checksum/config annotation")

    # Secrets: none in the ConfigMap; secret properties only via secretKeyRef.
    try:
        import tomllib
        cfg = tomllib.loads(toml_text)
    except ImportError:  # Python < 3.11
        cfg = None
    keys = re.findall(r'^"([^"]+)"\s*=', toml_text, re.M)
    check(not any(is_secret_property(k) for k in keys), f"no secret property in the ConfigMap ({len(keys)} kafka properties)")
    secret_props = values["kafka"].get("secretProperties") or {}
    env = {e["name"]: e for e in c.get("env", [])}
    for prop, key in secret_props.items():
        ref = [e for e in env.values() if e.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == key]
        check(len(ref) == 1 and ref[0]["valueFrom"]["secretKeyRef"]["name"] == values["kafka"]["existingSecret"],
              f"{prop} from secretKeyRef {values['kafka']['existingSecret']}/{key}")
        check(prop not in toml_text, f"{prop} absent from the ConfigMap")
    for e in env.values():
        if "value" in e and is_secret_property(e["name"]):
            fail(f"env {e['name']} holds a literal secret-looking value")
    for v in (cm.get("data") or {}).values():
        check("$(" not in v, "no env reference leaked into the ConfigMap")

    # check-config with the container's own command line.
    print("funnelstream check-config (container args and env)")
    cfg_mount = [m["mountPath"] for m in c["volumeMounts"] if vols[m["name"]].get("configMap", {}).get("name") == cm["metadata"]["name"]]
    if not check(len(cfg_mount) == 1, "ConfigMap mounted once"):
        return
    toml_path = os.path.join(tmp, "funnelstream.toml")
    fake_web = None
    if web["enabled"]:
        # The Secret is not part of the chart: make up what it would hold in
        # a temporary copy of the mount, and point web_config_file at it
        # (the only path rewritten; the rest of the TOML is as rendered).
        want_file = web_mount + "/web.yml"
        got_file = cfg.get("web_config_file") if cfg is not None else want_file
        check(got_file == want_file, f"web_config_file = {want_file}")
        fake_web = os.path.join(tmp, "web-config-secret")
        tls = (values["serviceMonitor"].get("scheme") or "https") == "https"
        fake_web_secret(fake_web, tls)
        line = f"web_config_file = {json.dumps(want_file)}"
        if check(toml_text.count(line) == 1, f"ConfigMap line `{line}`"):
            toml_text = toml_text.replace(line, f"web_config_file = {json.dumps(fake_web + '/web.yml')}")
    else:
        check(not re.search(r"^(web_config_file|probe_listen)\s*=", toml_text, re.M),
              "no web_config_file or probe_listen without webConfig")
    with open(toml_path, "w", encoding="utf-8") as f:
        f.write(toml_text)
    penv = {k: v for k, v in os.environ.items() if not k.startswith("FUNNELSTREAM_")}
    penv.pop("RUST_LOG", None)
    dummies = {}
    for name, e in env.items():
        if "value" in e:
            penv[name] = e["value"]
        elif "valueFrom" in e:
            dummies[name] = penv[name] = f"dummy-{name.lower()}-Zq7"
    args = [expand(a, penv) for a in c["command"][1:] + c["args"]]
    check(c["command"] == ["funnelstream"] and args[0] == "run", "runs `funnelstream run`")
    args[0] = "check-config"
    args = [toml_path if a.startswith(cfg_mount[0] + "/") else a for a in args]
    r = subprocess.run([binary] + args, capture_output=True, text=True, env=penv, timeout=60)
    shown = " ".join(a if not any(d in a for d in dummies.values()) else a.split("=")[0] + "=<dummy>" for a in args)
    if not check(r.returncode == 0, f"funnelstream {shown} exits 0"):
        print("       " + r.stderr.strip().replace("\n", "\n       "))
        return
    out = r.stdout
    check(not any(d in out or d in r.stderr for d in dummies.values()), "secret values masked in the output")
    for prop in secret_props:
        check(f'"{prop}" = "***"' in out, f"{prop} applied (shown masked)")
    try:
        import tomllib
        eff = tomllib.loads(out)
    except ImportError:
        print("  skip effective-settings comparison (needs Python 3.11 tomllib)")
        return
    e, k = values["engine"], values["kafka"]
    want = {
        "brokers": k["brokers"], "topics": k["topics"], "group": k["group"],
        "listen": f"{values['listenAddress']}:{port}",
        "log_format": values["logFormat"], "log_level": values["logLevel"],
        "windows": ",".join(e["windows"]), "clock": e["clock"],
        "dedup_capacity": e["dedupCapacity"], "max_channels": e["maxChannels"],
        "max_campaigns": e["maxCampaigns"], "max_tracked_deals": e["maxTrackedDeals"],
        "max_event_bytes": e["maxEventBytes"],
    }
    if e.get("workers") is not None:
        want["workers"] = e["workers"]
    if k.get("deadLetterTopic"):
        want["dead_letter_topic"] = k["deadLetterTopic"]
    else:
        check("dead_letter_topic" not in eff, "no dead_letter_topic without kafka.deadLetterTopic")
    cp = values["checkpoint"]
    if cp.get("topic"):
        want["checkpoint_topic"] = cp["topic"]
        want["checkpoint_policy"] = cp["policy"]
        # Printed in canonical form (e.g. 1m30s); compare the length.
        check(seconds(str(eff.get("checkpoint_interval"))) == seconds(cp["interval"]),
              f"checkpoint_interval {eff.get('checkpoint_interval')!r} == {cp['interval']!r}")
    else:
        check(not any(key.startswith("checkpoint_") for key in eff), "no checkpoint settings without checkpoint.topic")
        check(not re.search(r"^checkpoint_", toml_text, re.M), "no checkpoint_* keys in the ConfigMap without checkpoint.topic")
    if web["enabled"]:
        want["probe_listen"] = f"{values['listenAddress']}:{values['probes']['port']}"
        want["web_config_file"] = fake_web + "/web.yml"
        tls = (values["serviceMonitor"].get("scheme") or "https") == "https"
        check(f"# tls: {str(tls).lower()}, basic auth users: true" in out,
              f"check-config loaded the web config (tls: {str(tls).lower()}, basic auth users: true)")
    else:
        check("probe_listen" not in eff and "web_config_file" not in eff, "no probe_listen or web_config_file in effect")
    # The engine prints each window in its canonical form (1y -> 365d).
    if [seconds(w) for w in str(eff.get("windows")).split(",")] == [seconds(w) for w in e["windows"]]:
        want["windows"] = eff.get("windows")
    bad = {key: (eff.get(key), v) for key, v in want.items() if eff.get(key) != v}
    check(not bad, f"effective settings == values ({len(want)} keys){'' if not bad else ': ' + str(bad)}")
    props = {**{p: "***" for p in secret_props},
             **{p: str(v).lower() if isinstance(v, bool) else threshold_string(v)
                for p, v in (k.get("properties") or {}).items()}}
    check(eff.get("kafka", {}) == props, f"kafka properties applied ({len(props)})")

    print("NOTES.txt")
    check("port-forward" in notes and "/metrics" in notes and "/readyz" in notes, "NOTES.txt: port-forward, /metrics, /readyz")
    on = bool(values["checkpoint"].get("topic"))
    check(("Checkpointing is on" in notes) == on and ("Checkpointing is off" in notes) != on,
          f"NOTES.txt: checkpointing {'on' if on else 'off'}")
    if web["enabled"]:
        pp = values["probes"]["port"]
        https = (values["serviceMonitor"].get("scheme") or "https") == "https"
        check(f"http://127.0.0.1:{pp}/readyz" in notes and (" --cacert " in notes) == https and " -u USER " in notes,
              f"NOTES.txt: {'TLS and ' if https else ''}basic-auth curl for /metrics, plain /readyz on {pp}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", required=True)
    args = ap.parse_args()
    values = check_schema(args.out)
    check_yamllint(args.out)
    docs = load_docs(args.out)
    check_kubernetes(docs)
    pr = check_crds(docs, values)
    with tempfile.TemporaryDirectory() as tmp:
        if pr is not None:
            check_rules(pr, values, tmp)
        with open(os.path.join(args.out, "NOTES.txt"), encoding="utf-8") as f:
            notes = f.read()
        check_config_and_facts(docs, values, args.bin, tmp, notes)
    if failures:
        print(f"validate: {len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
