//! The deployment files:
//!
//! * the Helm chart `helm/funnelstream`, checked by the real `helm` (v4,
//!   built by `scripts/helm install`): `deploy/helm-check/check.sh` runs
//!   `helm lint --strict` and `helm template` with the default values, with
//!   `helm/funnelstream/ci/full-values.yaml` and with
//!   `helm/funnelstream/ci/secure-values.yaml` (TLS and basic auth from a
//!   web config, probes on the plain probe port), and validates what helm
//!   rendered: values schema, yamllint, kubernetes-validate,
//!   `funnelstream check-config` on the rendered ConfigMap with the
//!   container's own args (and a made-up web config Secret), promtool on the
//!   PrometheusRule and its equality with `deploy/prometheus/`, values the
//!   chart must refuse (helm must fail on them with the expected message);
//! * `deploy/docker-compose.yml` and the Dockerfile, by `deploy/compose/check.py`.
//!
//! The chart tests are ignored by a plain `cargo test`: they need helm, which
//! `scripts/helm install` builds into a cache (found there, or through the
//! environment variable HELM), and Debian's prometheus (promtool) and
//! openssl, and Python's pyyaml, jsonschema, yamllint and
//! kubernetes-validate; a missing one fails the test with a message naming
//! it. Run them with `cargo test --test it helm:: -- --include-ignored`.

use crate::support::{manifest, show, BIN};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The helm binary: $HELM, else where `scripts/helm install` puts it.
fn helm() -> PathBuf {
    if let Some(h) = std::env::var_os("HELM").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let out = Command::new("bash")
        .arg(manifest("scripts/helm"))
        .arg("path")
        .output()
        .expect("cannot run bash scripts/helm path");
    assert!(
        out.status.success(),
        "scripts/helm path failed\n{}",
        show(&out)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs check.sh (real helm) with `values` (relative to the repository) and
/// returns the directory of the rendered manifests.
fn check_chart(name: &str, values: &[&str]) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("helm-check-{name}"));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new("bash");
    cmd.arg(manifest("deploy/helm-check/check.sh"))
        .arg("--out")
        .arg(&out)
        .env("FUNNELSTREAM_BIN", BIN)
        .env("HELM", helm());
    for v in values {
        cmd.arg(manifest(v));
    }
    let res = cmd
        .output()
        .expect("cannot run bash deploy/helm-check/check.sh (Debian package bash)");
    let hint = if res.status.code() == Some(3) {
        "\nA tool is missing; install: scripts/helm install; \
         apt-get install -y prometheus openssl; \
         python3 -m pip install pyyaml jsonschema yamllint kubernetes-validate"
    } else {
        ""
    };
    assert!(
        res.status.success(),
        "deploy/helm-check/check.sh {values:?} failed ({}){hint}\n{}",
        res.status,
        show(&res)
    );
    out.join("render").join("manifests")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

fn assert_contains(text: &str, what: &[&str], file: &str) {
    for w in what {
        assert!(text.contains(w), "{file} lacks `{w}`:\n{text}");
    }
}

fn assert_lacks(text: &str, what: &[&str], file: &str) {
    for w in what {
        assert!(!text.contains(w), "{file} must not contain `{w}`:\n{text}");
    }
}

#[test]
#[ignore = "needs helm, promtool, openssl and Python packages: run scripts/test"]
fn chart_with_default_values_renders_and_validates() {
    let dir = check_chart("default", &[]);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "configmap.yaml",
            "deployment.yaml",
            "service.yaml",
            "serviceaccount.yaml"
        ],
        "optional objects (ServiceMonitor, PrometheusRule, PDB) are off by default"
    );
    for f in &files {
        assert_contains(
            &read(&dir, f),
            &[
                "app.kubernetes.io/name: funnelstream",
                "app.kubernetes.io/instance: funnelstream",
                "app.kubernetes.io/managed-by: Helm",
                "helm.sh/chart: funnelstream-0.1.0",
            ],
            f,
        );
    }
    let dep = read(&dir, "deployment.yaml");
    assert_contains(
        &dep,
        &[
            "command: [\"funnelstream\"]",
            "- run\n            - --config\n            - /etc/funnelstream/funnelstream.toml",
            "livenessProbe:\n            httpGet:\n              path: /healthz\n              port: http",
            "readinessProbe:\n            httpGet:\n              path: /readyz\n              port: http",
            "containerPort: 9490",
            "runAsNonRoot: true",
            "readOnlyRootFilesystem: true",
            "allowPrivilegeEscalation: false",
            "drop:\n              - ALL",
            "type: RuntimeDefault",
            "mountPath: /tmp",
            "emptyDir:",
            "checksum/config: ",
            "automountServiceAccountToken: false",
            "terminationGracePeriodSeconds: 30",
        ],
        "deployment.yaml",
    );
    assert_lacks(
        &dep,
        &["startupProbe", "secretKeyRef", "name: probes", "web-config"],
        "deployment.yaml",
    );
    let cm = read(&dir, "configmap.yaml");
    assert_contains(
        &cm,
        &[
            "brokers = \"kafka:9092\"",
            "topics = [\"funnel-events\"]",
            "listen = \"0.0.0.0:9490\"",
            "log_format = \"json\"",
            "windows = \"5m,1h,1d,7d,30d,90d\"",
            "max_event_bytes = 1048576",
        ],
        "configmap.yaml",
    );
    assert_lacks(
        &cm,
        &[
            "[kafka]",
            "e+06",
            "web_config_file",
            "probe_listen",
            "dead_letter_topic",
            "checkpoint_",
        ],
        "configmap.yaml",
    );
    assert_contains(
        &read(dir.parent().unwrap(), "NOTES.txt"),
        &["Checkpointing is off"],
        "NOTES.txt",
    );
    assert_contains(
        &read(&dir, "service.yaml"),
        &["port: 9490", "targetPort: http"],
        "service.yaml",
    );
}

#[test]
#[ignore = "needs helm, promtool, openssl and Python packages: run scripts/test"]
fn chart_with_every_option_renders_and_validates() {
    let dir = check_chart("full", &["helm/funnelstream/ci/full-values.yaml"]);
    let dep = read(&dir, "deployment.yaml");
    assert_contains(
        &dep,
        &[
            "replicas: 3",
            "image: \"registry.example.com/analytics/funnelstream:0.1.0-rc1\"",
            "- --kafka-property\n            - \"sasl.password=$(FS_KAFKA_PROP_SASL_PASSWORD)\"",
            "- name: FS_KAFKA_PROP_SASL_PASSWORD\n              valueFrom:\n                secretKeyRef:\n                  name: funnelstream-kafka\n                  key: \"kafka-password\"",
            "secretName: funnelstream-kafka",
            "mountPath: /var/run/secrets/funnelstream/kafka",
            "startupProbe:\n            httpGet:\n              path: /healthz",
            "memory: 8Gi",
            "serviceAccountName: funnelstream-sa",
            "priorityClassName: business-critical",
            "team: growth",
            "terminationGracePeriodSeconds: 60",
        ],
        "deployment.yaml",
    );
    let cm = read(&dir, "configmap.yaml");
    assert_contains(
        &cm,
        &[
            "[kafka]",
            "\"security.protocol\" = \"SASL_SSL\"",
            "\"sasl.username\" = \"funnelstream\"",
            "\"fetch.max.bytes\" = \"52428800\"",
            "\"socket.keepalive.enable\" = \"true\"",
            "workers = 3",
            "max_event_bytes = 262144",
            "dead_letter_topic = \"funnel-events-rejected\"",
            "checkpoint_topic = \"funnelstream-prod-checkpoints\"",
            "checkpoint_interval = \"10s\"",
            "checkpoint_policy = \"refuse\"",
        ],
        "configmap.yaml",
    );
    assert_contains(
        &read(dir.parent().unwrap(), "NOTES.txt"),
        &[
            "3 replicas share the topics' partitions",
            "Checkpointing is on: every partition's state goes to the compacted topic funnelstream-prod-checkpoints",
            "every 10s",
            "policy refuse",
            "Rejected events are copied to the topic funnel-events-rejected.",
        ],
        "NOTES.txt",
    );
    // No secret in the ConfigMap: neither the property nor any reference.
    assert_lacks(
        &cm,
        &["sasl.password", "kafka-password", "FS_KAFKA_PROP", "$("],
        "configmap.yaml",
    );
    assert_contains(
        &read(&dir, "servicemonitor.yaml"),
        &[
            "apiVersion: monitoring.coreos.com/v1",
            "kind: ServiceMonitor",
            "release: kube-prometheus-stack",
            "port: http",
            "path: /metrics",
            "scheme: http\n",
            "interval: 15s",
        ],
        "servicemonitor.yaml",
    );
    assert_lacks(
        &read(&dir, "servicemonitor.yaml"),
        &["tlsConfig", "basicAuth"],
        "servicemonitor.yaml",
    );
    let rules = read(&dir, "prometheusrule.yaml");
    assert_contains(
        &rules,
        &[
            "kind: PrometheusRule",
            "release: kube-prometheus-stack",
            "record: channel_window:funnel_cac:from_sums",
            "alert: FunnelCACHigh",
            "> 5000  # threshold: cac_max (default 2000; rendered 5000)",
            "> 0.02  # threshold: rejected_ratio_max (default 0.01; rendered 0.02)",
            "for: 2h",
        ],
        "prometheusrule.yaml",
    );
    assert_contains(
        &read(&dir, "pdb.yaml"),
        &["kind: PodDisruptionBudget", "minAvailable: 2"],
        "pdb.yaml",
    );
    assert_contains(
        &read(&dir, "service.yaml"),
        &["port: 8080", "targetPort: http"],
        "service.yaml",
    );
}

#[test]
#[ignore = "needs helm, promtool, openssl and Python packages: run scripts/test"]
fn chart_with_web_config_renders_and_validates() {
    let dir = check_chart("secure", &["helm/funnelstream/ci/secure-values.yaml"]);
    let dep = read(&dir, "deployment.yaml");
    assert_contains(
        &dep,
        &[
            "- name: http\n              containerPort: 9443",
            "- name: probes\n              containerPort: 8081",
            "startupProbe:\n            httpGet:\n              path: /healthz\n              port: probes",
            "livenessProbe:\n            httpGet:\n              path: /healthz\n              port: probes",
            "readinessProbe:\n            httpGet:\n              path: /readyz\n              port: probes",
            "- name: web-config\n              mountPath: /etc/funnelstream/web\n              readOnly: true",
            "- name: web-config\n          secret:\n            secretName: funnelstream-web",
        ],
        "deployment.yaml",
    );
    assert_lacks(&dep, &["port: http\n"], "deployment.yaml");
    assert_contains(
        &read(&dir, "configmap.yaml"),
        &[
            "listen = \"0.0.0.0:9443\"",
            "web_config_file = \"/etc/funnelstream/web/web.yml\"",
            "probe_listen = \"0.0.0.0:8081\"",
        ],
        "configmap.yaml",
    );
    let svc = read(&dir, "service.yaml");
    assert_contains(&svc, &["port: 443", "targetPort: http"], "service.yaml");
    assert_lacks(&svc, &["probes", "8081"], "service.yaml");
    assert_contains(
        &read(&dir, "servicemonitor.yaml"),
        &[
            "port: http",
            "scheme: https",
            "tlsConfig:\n        ca:\n          secret:\n            key: ca.crt\n            name: funnelstream-web",
            "insecureSkipVerify: false",
            "serverName: funnelstream.default.svc",
            "basicAuth:\n        username:\n          name: funnelstream-scrape\n          key: \"username\"\n        password:\n          name: funnelstream-scrape\n          key: \"password\"",
        ],
        "servicemonitor.yaml",
    );
    assert_contains(
        &read(dir.parent().unwrap(), "NOTES.txt"),
        &[
            "port-forward svc/funnelstream 8443:443",
            "curl -s --cacert ca.crt --resolve funnelstream.default.svc:8443:127.0.0.1 -u USER https://funnelstream.default.svc:8443/metrics",
            "curl -s http://127.0.0.1:8081/readyz",
        ],
        "NOTES.txt",
    );
}

#[test]
#[ignore = "needs python3 with pyyaml: run scripts/test"]
fn compose_file_and_dockerfile_match_the_repository() {
    let res = Command::new("python3")
        .arg(manifest("deploy/compose/check.py"))
        .arg("--bin")
        .arg(BIN)
        .output()
        .expect("cannot run python3 (Debian package python3)");
    assert!(
        res.status.success(),
        "deploy/compose/check.py failed ({}); it needs PyYAML (pip install pyyaml)\n{}",
        res.status,
        show(&res)
    );
}
