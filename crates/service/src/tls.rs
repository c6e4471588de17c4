//! TLS for the API port: a rustls `ServerConfig` built from the cluster's TLS profile
//! (minimum version and IANA cipher-suite names, as OpenShift hands them to kube-rbac-proxy),
//! and a certificate resolver that picks up rotated certificates without a restart.
//!
//! Kubernetes updates a mounted secret by swapping the `..data` symlink, which a watch on the
//! file path misses, so the files are polled: their content is compared every interval, and a
//! new pair is installed only once it parses and the key matches the certificate (a
//! half-rotated pair keeps the old certificate in service and is retried next time).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Certificate and key files are small; anything bigger is not a PEM pair.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: invalid PEM certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: no usable PEM private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{key} does not match the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("invalid --tls-min-version {0:?}: expected VersionTLS12 or VersionTLS13")]
    MinVersion(String),
    #[error("unknown TLS cipher suite {0:?} in --tls-cipher-suites (expected IANA names such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")]
    UnknownCipher(String),
    #[error("none of the cipher suites in --tls-cipher-suites is supported for TLS 1.2 (supported: {0})")]
    NoUsableCipher(String),
    #[error("building the TLS configuration: {0}")]
    Rustls(rustls::Error),
}

// The cause is part of the message and not a `source()`: printed once.
impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Rustls(e)
    }
}

/// Minimum protocol version, as the OpenShift TLS profile names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

impl MinVersion {
    pub fn parse(s: &str) -> Result<(Self, Option<&'static str>), TlsError> {
        match s.trim() {
            "VersionTLS12" | "TLSv1.2" | "1.2" => Ok((MinVersion::Tls12, None)),
            "VersionTLS13" | "TLSv1.3" | "1.3" => Ok((MinVersion::Tls13, None)),
            // The Old profile asks for 1.0; rustls never speaks below 1.2, which is stricter.
            "VersionTLS10" | "VersionTLS11" | "TLSv1.0" | "TLSv1.1" | "1.0" | "1.1" => Ok((
                MinVersion::Tls12,
                Some("TLS 1.0/1.1 are not supported; TLS 1.2 is the minimum"),
            )),
            other => Err(TlsError::MinVersion(other.to_owned())),
        }
    }

    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => BOTH,
            MinVersion::Tls13 => ONLY13,
        }
    }
}

/// IANA names of TLS 1.2 suites rustls (ring) implements, plus Go's legacy aliases.
fn supported_tls12(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// TLS 1.3 suites: always enabled, not configurable (Go behaves the same).
const TLS13_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows (so an OpenShift profile may name them) that rustls deliberately does not
/// implement (CBC, RC4, 3DES, static RSA key exchange). Skipped with a warning.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
];

/// The TLS policy derived from the flags, plus warnings to log.
#[derive(Debug)]
pub struct TlsPolicy {
    pub min_version: MinVersion,
    /// TLS 1.2 suites (TLS 1.3 suites are always all enabled).
    pub tls12_suites: Vec<SupportedCipherSuite>,
    pub warnings: Vec<String>,
}

impl TlsPolicy {
    pub fn from_flags(min_version: &str, cipher_names: &[String]) -> Result<Self, TlsError> {
        let (min_version, warning) = MinVersion::parse(min_version)?;
        let mut warnings: Vec<String> = warning.map(str::to_owned).into_iter().collect();
        let names: Vec<&str> = cipher_names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .collect();
        let all12: Vec<SupportedCipherSuite> = rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .copied()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .collect();
        if names.is_empty() {
            return Ok(TlsPolicy {
                min_version,
                tls12_suites: all12,
                warnings,
            });
        }
        let mut suites = Vec::new();
        for name in names {
            if let Some(s) = supported_tls12(name) {
                if !suites
                    .iter()
                    .any(|x: &SupportedCipherSuite| x.suite() == s.suite())
                {
                    suites.push(s);
                }
            } else if TLS13_NAMES.contains(&name) {
                // Accepted for profile compatibility; TLS 1.3 suites are not configurable.
            } else if KNOWN_UNSUPPORTED.contains(&name) {
                warnings.push(format!(
                    "cipher suite {name} is not supported by rustls; ignored"
                ));
            } else {
                return Err(TlsError::UnknownCipher(name.to_owned()));
            }
        }
        if suites.is_empty() && min_version == MinVersion::Tls12 {
            let supported: Vec<String> = all12.iter().map(|s| format!("{:?}", s.suite())).collect();
            return Err(TlsError::NoUsableCipher(supported.join(", ")));
        }
        Ok(TlsPolicy {
            min_version,
            tls12_suites: suites,
            warnings,
        })
    }

    fn provider(&self) -> CryptoProvider {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.retain(|s| match s {
            SupportedCipherSuite::Tls13(_) => true,
            SupportedCipherSuite::Tls12(_) => {
                self.tls12_suites.iter().any(|x| x.suite() == s.suite())
            }
        });
        provider
    }

    /// The server configuration (HTTP/2 and HTTP/1.1 offered through ALPN).
    pub fn server_config(&self, resolver: Arc<ReloadingCert>) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(self.provider()))
            .with_protocol_versions(self.min_version.versions())?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Serves whatever certificate the files currently hold.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// Digest of the (cert, key) bytes currently installed, to skip unchanged polls.
    digest: std::sync::Mutex<[u8; 32]>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish()
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read {
        path: path.to_owned(),
        cause: source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(buf)
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    let mut out = [0u8; 32];
    out.copy_from_slice(h.finalize().as_slice());
    out
}

fn parse_pair(
    cert_path: &Path,
    key_path: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).map_err(|e| {
        TlsError::Mismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            reason: e.to_string(),
        }
    })
}

impl ReloadingCert {
    /// Load the pair once; failure here stops the server (there is nothing to serve).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_pem = read_bounded(cert_path)?;
        let key_pem = read_bounded(key_path)?;
        let key = parse_pair(cert_path, key_path, &cert_pem, &key_pem)?;
        Ok(ReloadingCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: ArcSwap::from_pointee(key),
            digest: std::sync::Mutex::new(digest(&cert_pem, &key_pem)),
        })
    }

    /// Re-read the files; install the pair if it changed and is valid.
    /// `Ok(true)` = a new certificate is now served.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let cert_pem = read_bounded(&self.cert_path)?;
        let key_pem = read_bounded(&self.key_path)?;
        let d = digest(&cert_pem, &key_pem);
        {
            let guard = self.digest.lock().unwrap_or_else(|p| p.into_inner());
            if *guard == d {
                return Ok(false);
            }
        }
        let key = parse_pair(&self.cert_path, &self.key_path, &cert_pem, &key_pem)?;
        self.current.store(Arc::new(key));
        *self.digest.lock().unwrap_or_else(|p| p.into_inner()) = d;
        Ok(true)
    }

    /// Poll the files every `interval` until the task is aborted.
    pub fn spawn_poller<F>(
        self: &Arc<Self>,
        interval: Duration,
        on_reload: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() + Send + 'static,
    {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut last_error: Option<String> = None;
            loop {
                tick.tick().await;
                let me = Arc::clone(&this);
                let result = tokio::task::spawn_blocking(move || me.reload()).await;
                match result {
                    Ok(Ok(true)) => {
                        last_error = None;
                        on_reload();
                        tracing::info!(cert = %this.cert_path.display(), "TLS certificate reloaded");
                    }
                    Ok(Ok(false)) => last_error = None,
                    Ok(Err(e)) => {
                        // Log once per distinct problem, not every poll.
                        let msg = e.to_string();
                        if last_error.as_deref() != Some(msg.as_str()) {
                            tracing::warn!(error = %msg, "TLS certificate not reloaded; still serving the previous one");
                            last_error = Some(msg);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "TLS reload task failed"),
                }
            }
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn min_versions() {
        assert_eq!(
            MinVersion::parse("VersionTLS12").unwrap().0,
            MinVersion::Tls12
        );
        assert_eq!(
            MinVersion::parse("VersionTLS13").unwrap().0,
            MinVersion::Tls13
        );
        let (v, warn) = MinVersion::parse("VersionTLS10").unwrap();
        assert_eq!(v, MinVersion::Tls12);
        assert!(warn.is_some());
        let err = MinVersion::parse("VersionTLS14").unwrap_err().to_string();
        assert!(err.contains("VersionTLS14"), "{err}");
    }

    #[test]
    fn cipher_suite_names() {
        let p = TlsPolicy::from_flags("VersionTLS12", &names(&[""])).unwrap();
        assert_eq!(p.tls12_suites.len(), 6);
        let p = TlsPolicy::from_flags(
            "VersionTLS12",
            &names(&[
                "TLS_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            ]),
        )
        .unwrap();
        assert_eq!(p.tls12_suites.len(), 1);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        let err = TlsPolicy::from_flags("VersionTLS12", &names(&["TLS_FOO"])).unwrap_err();
        assert!(err.to_string().contains("TLS_FOO"), "{err}");
        let err = TlsPolicy::from_flags("VersionTLS12", &names(&["TLS_RSA_WITH_AES_128_CBC_SHA"]))
            .unwrap_err();
        assert!(matches!(err, TlsError::NoUsableCipher(_)), "{err}");
        // The Modern profile: TLS 1.3 only, its names only.
        let p = TlsPolicy::from_flags("VersionTLS13", &names(TLS13_NAMES)).unwrap();
        assert!(p.tls12_suites.is_empty());
        let provider = p.provider();
        assert_eq!(provider.cipher_suites.len(), 3);
    }
}
