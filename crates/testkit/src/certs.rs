//! Test certificate authority: real X.509 certificates (rcgen, ECDSA P-256) for TLS servers and
//! clients in tests.
//!
//! ```
//! use testkit::certs::TestCa;
//! let ca = TestCa::new("testkit test CA");
//! let server = ca.issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()]);
//! let dir = tempfile::tempdir().unwrap();
//! let (crt, key) = server.write_to(dir.path());
//! assert!(std::fs::read_to_string(crt).unwrap().contains("BEGIN CERTIFICATE"));
//! assert!(std::fs::read_to_string(key).unwrap().contains("PRIVATE KEY"));
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

/// Installs rustls' ring provider as the process default. Idempotent: a second call (or a provider
/// installed by someone else) is fine. Needed because kube, reqwest and axum-server all build
/// rustls configs from the process-level provider.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertKey {
    /// Writes `dir/tls.crt` and `dir/tls.key` (the names Kubernetes TLS secrets use) and returns
    /// their paths. The key file is mode 0600.
    pub fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let crt = dir.join("tls.crt");
        let key = dir.join("tls.key");
        std::fs::write(&crt, &self.cert_pem)
            .unwrap_or_else(|e| panic!("testkit: writing {}: {e}", crt.display()));
        std::fs::write(&key, &self.key_pem)
            .unwrap_or_else(|e| panic!("testkit: writing {}: {e}", key.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600));
        }
        (crt, key)
    }

    /// The first certificate of `cert_pem` in DER form.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        pem_to_der(&self.cert_pem)
    }
}

/// A self-signed CA that issues server and client certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA with a fresh key; `common_name` is its subject CN.
    pub fn new(common_name: &str) -> TestCa {
        let key = new_key();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("testkit: self-signing CA {common_name:?}: {e}"));
        TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// A serving certificate (EKU serverAuth) valid for the given DNS names and IP addresses.
    /// The CN is the first DNS name (or "testkit-server").
    pub fn issue_server(&self, dns_names: &[&str], ips: &[IpAddr]) -> CertKey {
        let mut sans = Vec::new();
        for name in dns_names {
            let name = (*name)
                .try_into()
                .unwrap_or_else(|e| panic!("testkit: invalid DNS name {name:?}: {e}"));
            sans.push(SanType::DnsName(name));
        }
        sans.extend(ips.iter().copied().map(SanType::IpAddress));
        let mut params = CertificateParams::default();
        params.distinguished_name =
            dn(dns_names.first().copied().unwrap_or("testkit-server"), None);
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate (EKU clientAuth) with subject CN=`common_name`, the form Kubernetes
    /// maps to user name `common_name` with no extra groups.
    pub fn issue_client(&self, common_name: &str) -> CertKey {
        self.issue_client_cert(common_name, None)
    }

    /// Like [`TestCa::issue_client`] with subject O=`group`, which Kubernetes maps to a group.
    /// (rcgen writes one attribute per type, so one group only.)
    pub fn issue_client_in_group(&self, common_name: &str, group: &str) -> CertKey {
        self.issue_client_cert(common_name, Some(group))
    }

    fn issue_client_cert(&self, common_name: &str, group: Option<&str>) -> CertKey {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name, group);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> CertKey {
        let key = new_key();
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("testkit: signing certificate: {e}"));
        CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn new_key() -> KeyPair {
    KeyPair::generate().unwrap_or_else(|e| panic!("testkit: generating a key pair: {e}"))
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// First certificate of a PEM bundle as DER. Panics on bad PEM: inputs come from this module.
pub(crate) fn pem_to_der(pem: &str) -> CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap_or_else(|e| panic!("testkit: parsing certificate PEM: {e}"))
}
