//! TLS and basic auth on every endpoint (web-config file in Prometheus
//! exporter-toolkit's format), secrets kept out of logs and `check-config`.
//! Needs `openssl` (Debian package) to make a throw-away certificate.

use crate::support::http::{builder, fetch};
use crate::support::{free_port, openssl, stdout_of, Engine, Scratch, BIN};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "s3cret-Pa55";
const SASL_PASSWORD: &str = "hunter2-sasl";

/// A throw-away CA (`ca.pem`) and a server certificate for 127.0.0.1
/// signed by it (`cert.pem`, `key.pem`), plus `web.yml`.
fn setup(d: &Path) -> String {
    let days = ["-days", "1"];
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=funnelstream test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            days[0],
            days[1],
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-extfile",
            "ext.cnf",
            days[0],
            days[1],
        ],
    );
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(
        d.join("web.yml"),
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  ops: {hash}\n"),
    )
    .unwrap();
    hash
}

fn start(d: &Path) -> (Engine, u16, u16) {
    let probe_port = free_port();
    let probe = format!("127.0.0.1:{probe_port}");
    let web = d.join("web.yml");
    let sasl_password = format!("sasl.password={SASL_PASSWORD}");
    let engine = Engine::without_broker(&[
        "--web-config-file",
        web.to_str().unwrap(),
        "--probe-listen",
        &probe,
        "--kafka-property",
        "security.protocol=SASL_PLAINTEXT",
        "--kafka-property",
        "sasl.mechanism=PLAIN",
        "--kafka-property",
        "sasl.username=funnel",
        "--kafka-property",
        &sasl_password,
        "--log-level",
        "debug",
    ]);
    let port = engine.port;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "not listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    (engine, port, probe_port)
}

fn agent(d: &Path) -> ureq::Agent {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(d.join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    builder().tls_config(Arc::new(cfg)).build()
}

fn get(a: &ureq::Agent, url: &str, auth: Option<(&str, &str)>) -> (u16, String, Option<String>) {
    use base64::Engine as _;
    let mut headers = Vec::new();
    let basic;
    if let Some((u, p)) = auth {
        let t = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        basic = format!("Basic {t}");
        headers.push(("Authorization", basic.as_str()));
    }
    let r = fetch(a, url, &headers).unwrap();
    let www = (r.status >= 400)
        .then(|| r.header("WWW-Authenticate").map(String::from))
        .flatten();
    (r.status, r.text(), www)
}

#[test]
#[ignore = "needs openssl: run scripts/test"]
fn tls_and_basic_auth_on_every_endpoint() {
    let d = Scratch::new("sec");
    let hash = setup(&d);
    let (engine, port, probe_port) = start(&d);
    let a = agent(&d);
    let base = format!("https://127.0.0.1:{port}");
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
        "/api/v1/kpis",
        "/api/v1/kpis/history",
        "/api/v1/health",
    ] {
        let (code, body, www) = get(&a, &format!("{base}{path}"), None);
        assert_eq!(code, 401, "{path} without credentials");
        assert_eq!(body, "Unauthorized\n", "nothing else on 401");
        assert!(www.unwrap().starts_with("Basic"));
        let (code, body, _) = get(&a, &format!("{base}{path}"), Some(("ops", "wrong")));
        assert_eq!(
            (code, body.as_str()),
            (401, "Unauthorized\n"),
            "{path} wrong password"
        );
        let (code, _, _) = get(&a, &format!("{base}{path}"), Some(("nobody", PASSWORD)));
        assert_eq!(code, 401, "{path} unknown user");
    }
    let (code, body, _) = get(&a, &format!("{base}/metrics"), Some(("ops", PASSWORD)));
    assert_eq!(code, 200);
    assert!(body.contains("funnel_build_info"));
    assert_eq!(
        get(&a, &format!("{base}/healthz"), Some(("ops", PASSWORD))).0,
        200
    );
    // The broker is unreachable: not ready, behind auth.
    assert_eq!(
        get(&a, &format!("{base}/readyz"), Some(("ops", PASSWORD))).0,
        503
    );

    // The probe address: health only, plain HTTP, no credentials needed.
    let probe = format!("http://127.0.0.1:{probe_port}");
    assert_eq!(
        ureq::get(&format!("{probe}/healthz"))
            .call()
            .unwrap()
            .status(),
        200
    );
    match ureq::get(&format!("{probe}/readyz")).call() {
        Err(ureq::Error::Status(503, _)) => {}
        other => panic!("readyz on the probe address: {other:?}"),
    }
    assert!(matches!(
        ureq::get(&format!("{probe}/metrics")).call(),
        Err(ureq::Error::Status(404, _))
    ));

    // Plain HTTP on the TLS port gets no answer a client could use.
    assert!(ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .is_err());

    // tail over TLS with the CA and credentials; and with a wrong password.
    let out = Command::new(BIN)
        .args(["tail", "--url", &base, "--once", "--user", "ops"])
        .arg("--ca-cert")
        .arg(d.join("ca.pem"))
        .env("FUNNELSTREAM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let board = String::from_utf8_lossy(&out.stdout);
    assert!(
        board.starts_with("funnelstream tail") && board.contains("\nTOTAL "),
        "{board}"
    );
    let out = Command::new(BIN)
        .args(["tail", "--url", &base, "--once", "--user", "ops"])
        .arg("--ca-cert")
        .arg(d.join("ca.pem"))
        .env("FUNNELSTREAM_PASSWORD", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // No secret in the logs (debug level) or in check-config's output.
    std::thread::sleep(Duration::from_millis(500));
    let log = engine.log();
    for secret in [SASL_PASSWORD, PASSWORD, hash.as_str()] {
        assert!(!log.contains(secret), "secret in the log:\n{log}");
    }
    let out = Command::new(BIN)
        .args([
            "check-config",
            "--kafka-property",
            &format!("sasl.password={SASL_PASSWORD}"),
        ])
        .arg("--web-config-file")
        .arg(d.join("web.yml"))
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(text.contains("tls: true, basic auth users: true"), "{text}");
    for secret in [SASL_PASSWORD, PASSWORD, hash.as_str()] {
        assert!(!text.contains(secret), "secret in check-config:\n{text}");
    }
}

#[test]
fn bad_web_config_exits_2_naming_the_key() {
    let d = Scratch::new("sec-bad");
    let cases = [
        (
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  cert: inline\n",
            "cert",
        ),
        ("tls_server_config:\n  key_file: k.pem\n", "cert_file"),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
            "missing.pem",
        ),
        (
            "basic_auth_users:\n  ops: plaintext\n",
            "basic_auth_users.ops",
        ),
        ("basic_auth_user:\n  ops: x\n", "basic_auth_user"),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let f = d.join(format!("web{i}.yml"));
        std::fs::write(&f, yaml).unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg("--web-config-file")
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(key), "{yaml}: should name `{key}`: {err}");
    }
}
