//! Test certificates: one CA, leaf certificates issued on demand, all
//! written as PEM files into a temporary directory.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use tempfile::TempDir;

/// A leaf certificate's files.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub crt: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// `ADDR,CRT,KEY` for `--https`.
    pub fn https(&self, addr: &str) -> String {
        format!("{addr},{},{}", self.crt.display(), self.key.display())
    }

    /// `NAME CRT,KEY` for `--sni`.
    pub fn sni(&self, name: &str) -> String {
        format!("{name} {},{}", self.crt.display(), self.key.display())
    }
}

pub struct Pki {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: PathBuf,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "cachet test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        Self {
            ca_der: ca.der().clone(),
            issuer: Issuer::new(params, key),
            ca_pem,
            dir,
        }
    }

    /// Issues a certificate for `names` (DNS names or IP addresses), written
    /// as `<file>.crt` (leaf then CA, a real chain) and `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let crt = self.dir.path().join(format!("{file}.crt"));
        let key_path = self.dir.path().join(format!("{file}.key"));
        let ca_pem = std::fs::read_to_string(&self.ca_pem).unwrap();
        std::fs::write(&crt, format!("{}{}", cert.pem(), ca_pem)).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Leaf {
            crt,
            key: key_path,
            der: cert.der().clone(),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
