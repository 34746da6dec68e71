//! Why a TLS library says a call on an FTP connection failed, in its own
//! words: OpenSSL's `SSL_R_*` reason as libssl records it in the error
//! queue (`ERR_vset_error`). A reason from 1000 on is an alert the peer
//! sent (`SSL_AD_REASON_OFFSET` + the alert's description, RFC 8446
//! section 6), which is how a server learns that its client refused its
//! certificate. The names are sslerr.h's and the RFC's.

use std::fmt;

use crate::tls_verify::Verifier;

/// One error a library recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LibraryError {
    pub library: Verifier,
    pub reason: u32,
}

/// OpenSSL's offset of a received alert's reason.
const ALERT_OFFSET: u32 = 1000;

/// TLS alert descriptions (RFC 8446 section 6, and TLS 1.2's).
const ALERTS: &[(u32, &str, &str)] = &[
    (0, "close_notify", "the peer closed the TLS session"),
    (
        10,
        "unexpected_message",
        "the peer got a message it did not expect",
    ),
    (20, "bad_record_mac", "a record failed its integrity check"),
    (22, "record_overflow", "a record was too long"),
    (
        40,
        "handshake_failure",
        "the peer found no acceptable parameters",
    ),
    (42, "bad_certificate", "the peer found the certificate bad"),
    (
        43,
        "unsupported_certificate",
        "the peer does not support the certificate's type",
    ),
    (
        44,
        "certificate_revoked",
        "the peer found the certificate revoked",
    ),
    (
        45,
        "certificate_expired",
        "the peer found the certificate expired",
    ),
    (
        46,
        "certificate_unknown",
        "the peer refused the certificate",
    ),
    (
        47,
        "illegal_parameter",
        "the peer found a parameter out of range",
    ),
    (
        48,
        "unknown_ca",
        "the peer does not trust the certificate's issuer",
    ),
    (49, "access_denied", "the peer denied access"),
    (50, "decode_error", "the peer could not decode a message"),
    (
        51,
        "decrypt_error",
        "a handshake signature or check failed at the peer",
    ),
    (
        70,
        "protocol_version",
        "the peer does not accept this TLS version",
    ),
    (
        71,
        "insufficient_security",
        "the peer wants stronger ciphers",
    ),
    (80, "internal_error", "the peer had an internal error"),
    (
        86,
        "inappropriate_fallback",
        "the peer refused a version fallback",
    ),
    (90, "user_canceled", "the peer canceled the handshake"),
    (
        109,
        "missing_extension",
        "the peer missed a required extension",
    ),
    (
        110,
        "unsupported_extension",
        "the peer got an extension it did not offer",
    ),
    (
        112,
        "unrecognized_name",
        "the peer does not serve the name asked for (SNI)",
    ),
    (
        116,
        "certificate_required",
        "the peer requires a client certificate",
    ),
    (
        120,
        "no_application_protocol",
        "no application protocol in common (ALPN)",
    ),
];

/// OpenSSL's own failure reasons an FTP connection meets (sslerr.h).
const OPENSSL_REASONS: &[(u32, &str, &str)] = &[
    (
        134,
        "SSL_R_CERTIFICATE_VERIFY_FAILED",
        "this end refused the peer's certificate",
    ),
    (156, "SSL_R_HTTP_REQUEST", "the peer spoke HTTP, not TLS"),
    (
        191,
        "SSL_R_NO_PROTOCOLS_AVAILABLE",
        "no TLS version is allowed here",
    ),
    (
        193,
        "SSL_R_NO_SHARED_CIPHER",
        "no cipher suite in common with the peer",
    ),
    (
        198,
        "SSL_R_PACKET_LENGTH_TOO_LONG",
        "a record's length was wrong (not TLS)",
    ),
    (
        199,
        "SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE",
        "the peer sent no certificate",
    ),
    (
        244,
        "SSL_R_UNEXPECTED_MESSAGE",
        "the peer sent an unexpected message",
    ),
    (
        258,
        "SSL_R_UNSUPPORTED_PROTOCOL",
        "the peer's TLS version is not accepted",
    ),
    (
        267,
        "SSL_R_WRONG_VERSION_NUMBER",
        "the peer's record is not TLS (a clear-text reply?)",
    ),
    (
        281,
        "SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC",
        "a record failed its integrity check",
    ),
    (
        294,
        "SSL_R_UNEXPECTED_EOF_WHILE_READING",
        "the connection closed without a TLS close",
    ),
    (
        396,
        "SSL_R_VERSION_TOO_LOW",
        "the peer's TLS version is too old",
    ),
];

/// An alert's RFC name and what it means to its receiver.
pub fn alert(description: u32) -> Option<(&'static str, &'static str)> {
    ALERTS
        .iter()
        .find(|(code, ..)| *code == description)
        .map(|&(_, name, meaning)| (name, meaning))
}

impl LibraryError {
    /// The description of the alert the peer sent, when the reason is one.
    pub fn alert_received(&self) -> Option<(&'static str, &'static str)> {
        alert(self.reason.checked_sub(ALERT_OFFSET)?)
    }

    /// The library's name for the reason, and what it means.
    pub fn reason(&self) -> Option<(&'static str, &'static str)> {
        OPENSSL_REASONS
            .iter()
            .find(|(code, ..)| *code == self.reason)
            .map(|&(_, name, reason)| (name, reason))
    }
}

impl fmt::Display for LibraryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let library = self.library;
        if let Some((name, meaning)) = self.alert_received() {
            return write!(f, "{library} received alert {name}: {meaning}");
        }
        if self.reason >= ALERT_OFFSET {
            let description = self.reason - ALERT_OFFSET;
            return write!(f, "{library} received alert {description}");
        }
        match self.reason() {
            Some((name, meaning)) => write!(f, "{library} failed: {meaning} ({name})"),
            None => write!(f, "{library} failed (reason {})", self.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl(reason: u32) -> LibraryError {
        LibraryError {
            library: Verifier::OpenSsl,
            reason,
        }
    }

    #[test]
    fn a_reason_from_1000_is_an_alert_the_peer_sent() {
        assert_eq!(
            openssl(1048).to_string(),
            "OpenSSL received alert unknown_ca: the peer does not trust the certificate's issuer"
        );
        assert_eq!(
            openssl(1045).alert_received().unwrap().0,
            "certificate_expired"
        );
        assert_eq!(openssl(1250).to_string(), "OpenSSL received alert 250");
        assert_eq!(
            openssl(134).to_string(),
            "OpenSSL failed: this end refused the peer's certificate \
             (SSL_R_CERTIFICATE_VERIFY_FAILED)"
        );
        assert_eq!(openssl(134).alert_received(), None);
        assert_eq!(openssl(7).to_string(), "OpenSSL failed (reason 7)");
    }
}
