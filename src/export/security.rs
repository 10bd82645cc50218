//! HTTP security: optional TLS and basic auth (bcrypt) for every endpoint,
//! configured by a web-config YAML file in the format of Prometheus'
//! exporter-toolkit (`--web-config-file`):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: ca.crt                          # with client auth
//!   min_version: TLS12                              # TLS12 or TLS13
//! basic_auth_users:
//!   ops: $2y$10$...                                 # bcrypt hashes
//! ```
//!
//! Supported keys are those above plus `max_version` and
//! `prefer_server_cipher_suites` (accepted, no effect: rustls picks safe
//! suites) and `http_server_config.http2` (accepted, no effect). Anything
//! else is an error naming the key. Wrong credentials get 401 and nothing
//! else; passwords and hashes are never logged.

use crate::config::ConfigError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    pub tls_server_config: Option<TlsServerConfig>,
    pub basic_auth_users: Option<BTreeMap<String, String>>,
    pub http_server_config: Option<HttpServerConfig>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    pub http2: Option<bool>,
}

/// What the HTTP server needs: TLS settings and the users.
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.auth.as_ref().map(|a| a.users.len()),
            )
            .finish()
    }
}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::invalid(&format!("web_config_file: {key}"), problem)
}

fn relative(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn tls_version(
    key: &str,
    v: &str,
) -> Result<&'static rustls::SupportedProtocolVersion, ConfigError> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        other => Err(err(key, format!("`{other}`: use TLS12 or TLS13"))),
    }
}

fn read_certs(
    key: &str,
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConfigError> {
    let data = std::fs::read(path).map_err(|e| err(key, format!("{}: {e}", path.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(|e| err(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(
            key,
            format!("{}: no PEM certificate found", path.display()),
        ));
    }
    Ok(certs)
}

/// Loads and validates a web-config file; paths inside are relative to it.
pub fn load(path: &Path) -> Result<Security, ConfigError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = read_web_config(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sec = Security::default();
    if let Some(t) = &cfg.tls_server_config {
        sec.tls = Some(Arc::new(tls_server(t, base)?));
    }
    if let Some(users) = &cfg.basic_auth_users {
        sec.auth = basic_auth(users)?;
    }
    Ok(sec)
}

/// The file parsed; an empty file is the default (no TLS, no users).
fn read_web_config(path: &Path) -> Result<WebConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("file", format!("{}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(WebConfig::default());
    }
    serde_norway::from_str(&text).map_err(|e| err("file", format!("{}: {e}", path.display())))
}

/// The TLS server configuration of `tls_server_config`.
fn tls_server(t: &TlsServerConfig, base: &Path) -> Result<rustls::ServerConfig, ConfigError> {
    let cert = t.cert_file.as_ref().ok_or_else(|| {
        err(
            "tls_server_config.cert_file",
            "required with tls_server_config",
        )
    })?;
    let key = t.key_file.as_ref().ok_or_else(|| {
        err(
            "tls_server_config.key_file",
            "required with tls_server_config",
        )
    })?;
    let certs = read_certs("tls_server_config.cert_file", &relative(base, cert))?;
    let key_der = read_private_key(&relative(base, key))?;
    let versions = tls_versions(t)?;
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&versions);
    let builder = with_client_auth(builder, t, base)?;
    let mut server = builder.with_single_cert(certs, key_der).map_err(|e| {
        err(
            "tls_server_config.key_file",
            format!("does not match cert_file: {e}"),
        )
    })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

fn read_private_key(
    key_path: &Path,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, ConfigError> {
    let key_data = std::fs::read(key_path).map_err(|e| {
        err(
            "tls_server_config.key_file",
            format!("{}: {e}", key_path.display()),
        )
    })?;
    rustls_pemfile::private_key(&mut &key_data[..])
        .map_err(|e| err("tls_server_config.key_file", e.to_string()))?
        .ok_or_else(|| {
            err(
                "tls_server_config.key_file",
                format!("{}: no PEM private key found", key_path.display()),
            )
        })
}

/// The protocol versions between `min_version` and `max_version`.
fn tls_versions(
    t: &TlsServerConfig,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ConfigError> {
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> =
        vec![&rustls::version::TLS12, &rustls::version::TLS13];
    if let Some(v) = &t.min_version {
        if tls_version("tls_server_config.min_version", v)? == &rustls::version::TLS13 {
            versions.retain(|x| *x == &rustls::version::TLS13);
        }
    }
    if let Some(v) = &t.max_version {
        if tls_version("tls_server_config.max_version", v)? == &rustls::version::TLS12 {
            versions.retain(|x| *x == &rustls::version::TLS12);
        }
    }
    if versions.is_empty() {
        return Err(err(
            "tls_server_config.min_version",
            "greater than max_version",
        ));
    }
    Ok(versions)
}

/// `builder` with the client certificate check of `client_auth_type`.
fn with_client_auth(
    builder: rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>,
    t: &TlsServerConfig,
    base: &Path,
) -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, ConfigError>
{
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    match auth_type {
        "NoClientCert" => Ok(builder.with_no_client_auth()),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let verifier = client_verifier(t, base, auth_type)?;
            Ok(builder.with_client_cert_verifier(verifier))
        }
        other => Err(err(
            "tls_server_config.client_auth_type",
            format!("`{other}` is not supported: use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
        )),
    }
}

/// Client certificates checked against `client_ca_file`; optional with
/// `VerifyClientCertIfGiven`.
fn client_verifier(
    t: &TlsServerConfig,
    base: &Path,
    auth_type: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ConfigError> {
    let ca = t.client_ca_file.as_ref().ok_or_else(|| {
        err(
            "tls_server_config.client_ca_file",
            format!("required with client_auth_type {auth_type}"),
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs("tls_server_config.client_ca_file", &relative(base, ca))? {
        roots
            .add(c)
            .map_err(|e| err("tls_server_config.client_ca_file", e.to_string()))?;
    }
    let v = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots));
    let v = if auth_type == "VerifyClientCertIfGiven" {
        v.allow_unauthenticated()
    } else {
        v
    };
    v.build()
        .map_err(|e| err("tls_server_config.client_ca_file", e.to_string()))
}

/// The users of `basic_auth_users`, each name checked and each hash a
/// bcrypt one; `None` when there are none.
fn basic_auth(users: &BTreeMap<String, String>) -> Result<Option<Arc<BasicAuth>>, ConfigError> {
    for (user, hash) in users {
        if user.contains(':') {
            return Err(err(
                &format!("basic_auth_users.{user}"),
                "user names cannot contain `:`",
            ));
        }
        let ok = hash.len() == 60 && ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
        if !ok {
            return Err(err(
                &format!("basic_auth_users.{user}"),
                "not a bcrypt hash (e.g. from `htpasswd -nBC 10 USER`)",
            ));
        }
    }
    if users.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(BasicAuth {
        users: users.clone(),
        verified: Mutex::new(HashMap::new()),
    })))
}

/// Users and a small cache of verified credentials (bcrypt is slow on
/// purpose; a scrape every 15 s should not pay for it every time).
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashMap<u128, bool>>,
}

const CACHE_MAX: usize = 256;

impl BasicAuth {
    fn check(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            // Same cost as a wrong password, so user names do not leak.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| bcrypt::hash("funnelstream", 10).unwrap_or_default());
            let _ = bcrypt::verify(password, dummy);
            return false;
        };
        let mut key_src = Vec::with_capacity(user.len() + password.len() + 1);
        key_src.extend_from_slice(user.as_bytes());
        key_src.push(0);
        key_src.extend_from_slice(password.as_bytes());
        let key = xxhash_rust::xxh3::xxh3_128(&key_src);
        if let Some(&ok) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return ok;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }
}

fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"funnelstream\""),
    );
    r
}

/// Axum middleware: every request needs valid basic-auth credentials.
pub(crate) async fn require_auth(
    State(auth): State<Arc<BasicAuth>>,
    req: Request,
    next: Next,
) -> Response {
    let creds = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(creds) = creds else {
        return unauthorized();
    };
    let Some((user, password)) = creds.split_once(':') else {
        return unauthorized();
    };
    let (user, password) = (user.to_string(), password.to_string());
    let ok = tokio::task::spawn_blocking(move || auth.check(&user, &password))
        .await
        .unwrap_or(false);
    if ok {
        next.run(req).await
    } else {
        unauthorized()
    }
}
