//! Readiness probes: run a command, connect to a unix socket, GET an
//! HTTP(S) URL (with a CA, a client certificate, basic auth), or a check of
//! the caller's own ([`ReadinessCheck`], e.g. a service's own API).

use std::{
    fmt, io,
    path::{Path, PathBuf},
    process::ExitStatus,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use base64::Engine as _;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpStream, UnixStream},
};
use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    pki_types::{
        CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName,
        pem::{Error as PemError, PemObject},
    },
};

/// How and how often readiness is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePolicy {
    pub probe: Probe,
    /// Between checks until the service is first ready.
    pub starting_period: Duration,
    /// Between checks once it is ready.
    pub period: Duration,
    /// One check's time limit.
    pub timeout: Duration,
    /// Failed checks in a row before a ready service is reported unready.
    pub failure_threshold: u32,
}

impl ProbePolicy {
    pub fn new(probe: Probe) -> Self {
        Self {
            probe,
            starting_period: Duration::from_millis(200),
            period: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
            failure_threshold: 3,
        }
    }
}

/// One readiness check.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The command exits 0.
    Exec { argv: Vec<String> },
    /// The unix socket accepts a connection.
    UnixConnect { path: PathBuf },
    /// The URL answers 2xx.
    Http(HttpProbe),
    /// A check the service's owner brings.
    Custom(CustomProbe),
}

/// Why a service is not ready.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("empty probe command")]
    EmptyCommand,
    #[error("running {program}: {source}")]
    Spawn { program: String, source: io::Error },
    /// The command ran and failed; `stderr` is its last line.
    #[error("{}", format!("{program}: {status} {stderr}").trim_end())]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("connecting to {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    /// The TLS settings of an HTTPS probe are unusable.
    #[error("{url}: {source}")]
    TlsSetup { url: String, source: TlsSetupError },
    #[error("{url}: TLS: {source}")]
    Handshake { url: String, source: io::Error },
    #[error("{url}: {source}")]
    Io { url: String, source: io::Error },
    #[error("{url}: {source}")]
    BadResponse { url: String, source: BadResponse },
    #[error("{}", format!("{url} answered {code} {body}").trim_end())]
    Status {
        url: String,
        code: u16,
        body: String,
    },
    /// A [`ReadinessCheck`] said no.
    #[error("{0}")]
    Check(String),
}

/// Why an HTTPS probe's TLS settings cannot be used: a CA or client
/// certificate file, or the server name.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{}: {source}", path.display())]
    Pem { path: PathBuf, source: PemError },
    #[error("{}: no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("CA {}: {source}", path.display())]
    Ca {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client key {}: {source}", path.display())]
    ClientKey { path: PathBuf, source: PemError },
    #[error("client certificate {}: {source}", path.display())]
    ClientCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{0}")]
    Protocols(#[source] rustls::Error),
    #[error("server name: {0}")]
    ServerName(#[source] InvalidDnsNameError),
}

/// What is wrong with an answer that is not an HTTP/1.x response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("empty response")]
    Empty,
    #[error("not an HTTP response: {0:.60}")]
    NotHttp(String),
    #[error("bad status line: {0:.60}")]
    StatusLine(String),
}

/// A readiness check that only its owner knows how to make (a service's
/// own API, say). It is compared by [`ReadinessCheck::identity`], so two
/// definitions with the same check are equal.
#[async_trait]
pub trait ReadinessCheck: Send + Sync + fmt::Debug {
    /// What is checked, e.g. `containerd version unix:///run/x.sock`.
    fn identity(&self) -> String;

    /// `Ok` with a short description of what answered.
    async fn check(&self) -> Result<String, ProbeError>;
}

/// A [`ReadinessCheck`] in a [`Probe`].
#[derive(Debug, Clone)]
pub struct CustomProbe(pub Arc<dyn ReadinessCheck>);

impl PartialEq for CustomProbe {
    fn eq(&self, other: &Self) -> bool {
        self.0.identity() == other.0.identity()
    }
}

/// A basic-auth password; never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An HTTP(S) GET.
#[derive(Clone, PartialEq)]
pub struct HttpProbe {
    pub https: bool,
    /// Host name or address to connect to (and to check the certificate for).
    pub host: String,
    pub port: u16,
    pub path: String,
    /// PEM file of the CA the server certificate must chain to (HTTPS).
    pub ca: Option<PathBuf>,
    /// PEM certificate and key to present (HTTPS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// User and password for basic auth.
    pub basic_auth: Option<(String, Password)>,
}

impl fmt::Debug for HttpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbe")
            .field("url", &self.url())
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(user, _)| user),
            )
            .finish()
    }
}

impl HttpProbe {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }
}

/// Runs one check. `Ok` carries a short description of what answered.
pub async fn check(probe: &Probe, timeout: Duration) -> Result<String, ProbeError> {
    match tokio::time::timeout(timeout, run(probe)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

async fn run(probe: &Probe) -> Result<String, ProbeError> {
    match probe {
        Probe::Exec { argv } => exec(argv).await,
        Probe::UnixConnect { path } => UnixStream::connect(path)
            .await
            .map(|_| format!("{} accepts connections", path.display()))
            .map_err(|source| ProbeError::Connect {
                path: path.clone(),
                source,
            }),
        Probe::Http(http) => http_get(http).await,
        Probe::Custom(custom) => custom.0.check().await,
    }
}

async fn exec(argv: &[String]) -> Result<String, ProbeError> {
    let (program, args) = argv.split_first().ok_or(ProbeError::EmptyCommand)?;
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| ProbeError::Spawn {
            program: program.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(format!("{program} exited 0"))
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(ProbeError::Failed {
            program: program.clone(),
            status: output.status,
            stderr: stderr.lines().last().unwrap_or("").trim().to_owned(),
        })
    }
}

async fn http_get(probe: &HttpProbe) -> Result<String, ProbeError> {
    let url = probe.url();
    let io_error = |source| ProbeError::Io {
        url: url.clone(),
        source,
    };
    let tcp = TcpStream::connect((probe.host.as_str(), probe.port))
        .await
        .map_err(io_error)?;
    let (code, body) = if probe.https {
        let setup = |source: TlsSetupError| ProbeError::TlsSetup {
            url: url.clone(),
            source,
        };
        let config = tls_config(probe).map_err(setup)?;
        let name = ServerName::try_from(probe.host.clone())
            .map_err(|e| setup(TlsSetupError::ServerName(e)))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|source| ProbeError::Handshake {
                url: url.clone(),
                source,
            })?;
        request(tls, probe, &url).await
    } else {
        request(tcp, probe, &url).await
    }?;
    if (200..=299).contains(&code) {
        Ok(format!("{url} answered {code} {body}")
            .trim_end()
            .to_owned())
    } else {
        Err(ProbeError::Status { url, code, body })
    }
}

fn tls_config(probe: &HttpProbe) -> Result<ClientConfig, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    if let Some(ca) = &probe.ca {
        for cert in pem_certs(ca)? {
            roots.add(cert).map_err(|source| TlsSetupError::Ca {
                path: ca.clone(),
                source,
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Protocols)?
        .with_root_certificates(roots);
    match &probe.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = pem_certs(cert)?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|source| TlsSetupError::ClientKey {
                    path: key.clone(),
                    source,
                })?;
            builder.with_client_auth_cert(chain, key).map_err(|source| {
                TlsSetupError::ClientCertificate {
                    path: cert.clone(),
                    source,
                }
            })
        }
    }
}

fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|source| TlsSetupError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Longest response read; a probe wants the status line and a short body.
const MAX_RESPONSE: usize = 8 << 10;

/// Sends a GET and returns the status code and the first line of the body.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    probe: &HttpProbe,
    url: &str,
) -> Result<(u16, String), ProbeError> {
    let io_error = |source| ProbeError::Io {
        url: url.to_owned(),
        source,
    };
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tfagent-probe\r\nAccept: */*\r\nConnection: close\r\n",
        probe.path, probe.host
    );
    if let Some((user, password)) = &probe.basic_auth {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", password.expose()));
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io_error)?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while response.len() < MAX_RESPONSE {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify: keep what came.
            Err(_) if !response.is_empty() => break,
            Err(source) => return Err(io_error(source)),
        }
    }
    parse_response(&response).map_err(|source| ProbeError::BadResponse {
        url: url.to_owned(),
        source,
    })
}

/// The status code and the first body line of an HTTP/1.x response.
pub fn parse_response(response: &[u8]) -> Result<(u16, String), BadResponse> {
    let text = String::from_utf8_lossy(response);
    let status_line = text.lines().next().ok_or(BadResponse::Empty)?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(BadResponse::NotHttp(status_line.to_owned()));
    }
    let code = parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| BadResponse::StatusLine(status_line.to_owned()))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| {
            body.lines()
                .next()
                .unwrap_or("")
                .trim()
                .chars()
                .take(120)
                .collect()
        })
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn responses_are_parsed() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap(),
            (200, "ok".into())
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 401 Unauthorized\r\n\r\n{\"kind\":\"Status\"}\n")
                .unwrap()
                .0,
            401
        );
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"SSH-2.0-x\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n").is_err());
    }

    #[test]
    fn the_basic_auth_password_is_not_in_debug() {
        let probe = HttpProbe {
            https: true,
            host: "::1".into(),
            port: 6443,
            path: "/readyz".into(),
            ca: None,
            client_cert: None,
            basic_auth: Some(("admin".into(), Password::new("hunter2"))),
        };
        let shown = format!("{probe:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("https://[::1]:6443/readyz"), "{shown}");
    }

    #[tokio::test]
    async fn http_probe_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for answer in ["200 OK\r\n\r\nok", "503 Service Unavailable\r\n\r\nnot yet"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = socket.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(
                    request.contains("Authorization: Basic YWRtaW46cHc="),
                    "{request}"
                );
                socket
                    .write_all(format!("HTTP/1.1 {answer}").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let probe = Probe::Http(HttpProbe {
            https: false,
            host: "127.0.0.1".into(),
            port,
            path: "/readyz".into(),
            ca: None,
            client_cert: None,
            basic_auth: Some(("admin".into(), Password::new("pw"))),
        });
        let ok = check(&probe, Duration::from_secs(5)).await.unwrap();
        assert!(ok.ends_with("answered 200 ok"), "{ok}");
        let err = check(&probe, Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("503 not yet"), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn exec_and_unix_probes() {
        let ok = Probe::Exec {
            argv: vec!["/bin/sh".into(), "-c".into(), "exit 0".into()],
        };
        assert!(check(&ok, Duration::from_secs(5)).await.is_ok());
        let bad = Probe::Exec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo nope >&2; exit 3".into(),
            ],
        };
        let err = check(&bad, Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let probe = Probe::UnixConnect { path: path.clone() };
        assert!(check(&probe, Duration::from_secs(1)).await.is_err());
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        assert!(check(&probe, Duration::from_secs(1)).await.is_ok());
        let slow = Probe::Exec {
            argv: vec!["/bin/sleep".into(), "5".into()],
        };
        let err = check(&slow, Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout(_)), "{err}");
        assert!(err.to_string().contains("no answer within"), "{err}");
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate,
    /// made with the openssl CLI; `None` when it is not installed.
    fn certificates(dir: &Path) -> Option<()> {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("skipped: needs the openssl CLI to make test certificates");
            return None;
        }
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (ca, subject) in [("ca", "/CN=probe-test-ca"), ("other-ca", "/CN=other-ca")] {
            let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend([
                "-keyout", &key, "-out", &crt, "-subj", subject, "-days", "1",
            ]);
            openssl(dir, &args);
        }
        for (name, ext) in [("server", "san.ext"), ("client", "client.ext")] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=probe-test"]);
            openssl(dir, &args);
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "1",
                    "-extfile",
                    ext,
                ],
            );
        }
        Some(())
    }

    #[tokio::test]
    async fn https_probe_checks_the_ca_and_presents_the_client_certificate() {
        use tokio_rustls::rustls::{ServerConfig, server::WebPkiClientVerifier};

        let dir = tempfile::tempdir().unwrap();
        if certificates(dir.path()).is_none() {
            return;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client_roots = RootCertStore::empty();
        client_roots
            .add(pem_certs(&dir.path().join("ca.crt")).unwrap().remove(0))
            .unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(client_roots),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                pem_certs(&dir.path().join("server.crt")).unwrap(),
                PrivateKeyDer::from_pem_file(dir.path().join("server.key")).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let probe = |ca: &str, client: bool| {
            Probe::Http(HttpProbe {
                https: true,
                host: "127.0.0.1".into(),
                port,
                path: "/readyz".into(),
                ca: Some(dir.path().join(ca)),
                client_cert: client
                    .then(|| (dir.path().join("client.crt"), dir.path().join("client.key"))),
                basic_auth: None,
            })
        };
        let timeout = Duration::from_secs(5);
        let ok = check(&probe("ca.crt", true), timeout).await.unwrap();
        assert!(ok.contains("answered 200 ok"), "{ok}");
        let wrong_ca = check(&probe("other-ca.crt", true), timeout)
            .await
            .unwrap_err()
            .to_string();
        assert!(wrong_ca.contains("TLS"), "{wrong_ca}");
        assert!(
            check(&probe("ca.crt", false), timeout).await.is_err(),
            "no client certificate"
        );
        let missing = check(&probe("nope.crt", true), timeout)
            .await
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.crt"), "{missing}");
    }

    /// Answers as told, and counts its calls.
    #[derive(Debug)]
    struct Scripted {
        ready: bool,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl ReadinessCheck for Scripted {
        fn identity(&self) -> String {
            format!("scripted {}", self.ready)
        }

        async fn check(&self) -> Result<String, ProbeError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.ready {
                Ok("scripted answers".into())
            } else {
                Err(ProbeError::Check("scripted says no".into()))
            }
        }
    }

    #[tokio::test]
    async fn a_custom_check_is_asked_and_compared_by_identity() {
        let ready = Arc::new(Scripted {
            ready: true,
            calls: 0.into(),
        });
        let probe = Probe::Custom(CustomProbe(ready.clone()));
        assert_eq!(
            check(&probe, Duration::from_secs(1)).await.unwrap(),
            "scripted answers"
        );
        assert_eq!(ready.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let same = Probe::Custom(CustomProbe(Arc::new(Scripted {
            ready: true,
            calls: 0.into(),
        })));
        assert_eq!(probe, same);
        let refusing = Probe::Custom(CustomProbe(Arc::new(Scripted {
            ready: false,
            calls: 0.into(),
        })));
        assert_ne!(probe, refusing);
        let err = check(&refusing, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err.to_string(), "scripted says no");
    }
}
