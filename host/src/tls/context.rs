//! Session contexts: the namespace a TLS session belongs to.
//!
//! A session may only resume under the certificate it was made with, or under
//! the explicit `https-session-context` an operator shares between routers.
//! Every key the session store sees is prefixed with this context, so an SNI
//! name's sessions are invisible to other names and sockets (the bug uWSGI
//! #580 and hitch #196 describe).

use aws_lc_rs::digest;
use rustls::pki_types::CertificateDer;

/// Length of every context: short enough to keep cache keys small, long
/// enough that distinct certificates never collide.
pub const CONTEXT_LEN: usize = 16;

/// A session context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionContext(pub [u8; CONTEXT_LEN]);

impl SessionContext {
    /// The context of a certificate served under `sni_name` (or as a socket's
    /// default when `None`).
    ///
    /// With an explicit `https-session-context`, the context is that text plus
    /// the SNI name, so routers sharing the text share sessions even with
    /// different certificates; without it, the context is the certificate
    /// chain itself, so routers serving the same chain agree automatically.
    pub fn derive(
        explicit: Option<&str>,
        sni_name: Option<&str>,
        chain: &[CertificateDer<'_>],
    ) -> Self {
        let mut material = Vec::from(*b"cachet session context v1\0");
        match explicit {
            Some(text) => {
                material.extend_from_slice(b"explicit\0");
                push_field(&mut material, text.as_bytes());
                push_field(&mut material, sni_name.unwrap_or_default().as_bytes());
            }
            None => {
                material.extend_from_slice(b"chain\0");
                for certificate in chain {
                    push_field(&mut material, certificate);
                }
            }
        }
        let hash = digest::digest(&digest::SHA256, &material);
        let mut context = [0; CONTEXT_LEN];
        context.copy_from_slice(&hash.as_ref()[..CONTEXT_LEN]);
        Self(context)
    }

    /// Lower-case hex, for logs.
    pub fn hex(&self) -> String {
        crate::hex::Hex(&self.0).to_string()
    }
}

/// Length-prefixed, so no two field lists produce the same material.
fn push_field(material: &mut Vec<u8>, field: &[u8]) {
    material.extend_from_slice(&(field.len() as u64).to_be_bytes());
    material.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_separate_certificates_and_names() {
        let a = [CertificateDer::from(vec![1, 2, 3])];
        let b = [CertificateDer::from(vec![1, 2, 4])];
        assert_eq!(
            SessionContext::derive(None, None, &a),
            SessionContext::derive(None, Some("x.test"), &a)
        );
        assert_ne!(
            SessionContext::derive(None, None, &a),
            SessionContext::derive(None, None, &b)
        );
        assert_eq!(
            SessionContext::derive(Some("shared"), None, &a),
            SessionContext::derive(Some("shared"), None, &b)
        );
        assert_ne!(
            SessionContext::derive(Some("shared"), Some("x.test"), &a),
            SessionContext::derive(Some("shared"), Some("y.test"), &a)
        );
    }
}
