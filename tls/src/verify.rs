//! How a client checks a server: the chain up to a trusted CA and the
//! validity dates, as webpki does, and then the certificate's role instead
//! of its host name. Bricks are reached by addresses that change (a pod
//! rescheduled, `brickfs dev` on ports of the moment); what matters is that
//! the peer is a brick of this cluster (its role), and which brick it is,
//! the brick's UUID says in `hello`, checked against the volume's spec.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::identity;
use crate::role::Role;

#[derive(Debug)]
pub struct RoleVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    wanted: Role,
}

impl RoleVerifier {
    pub fn new(roots: Arc<RootCertStore>, provider: Arc<CryptoProvider>, wanted: Role) -> Self {
        RoleVerifier {
            roots,
            provider,
            wanted,
        }
    }
}

impl ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let peer = identity::of_cert(end_entity).map_err(|e| Error::General(e.to_string()))?;
        if peer.role() != Some(self.wanted) {
            return Err(Error::General(format!(
                "the server is {peer}, not a {}",
                self.wanted
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // Only TLS 1.3 is ever negotiated.
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
