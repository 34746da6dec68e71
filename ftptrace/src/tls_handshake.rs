//! How a TLS handshake on an FTP connection ended, as the library's own
//! return says it: OpenSSL's `SSL_do_handshake` (1 done, 0 refused; a
//! negative return may only mean "call again", so the kernel keeps none),
//! GnuTLS's `gnutls_handshake` (0 done, else a `GNUTLS_E_*` code; its
//! "call again" codes are not kept either). The names are gnutls.h's.

use std::fmt;

use crate::tls_verify::Verifier;

/// One handshake call's end on an FTP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub library: Verifier,
    /// The call's return value.
    pub code: i32,
}

/// GnuTLS's handshake errors an FTP connection meets, with their reasons.
const GNUTLS_ERRORS: &[(i32, &str, &str)] = &[
    (
        -8,
        "GNUTLS_E_UNSUPPORTED_VERSION_PACKET",
        "the peer's TLS version is not accepted",
    ),
    (
        -9,
        "GNUTLS_E_UNEXPECTED_PACKET_LENGTH",
        "a TLS record's length was wrong (not TLS, or cut short)",
    ),
    (
        -12,
        "GNUTLS_E_FATAL_ALERT_RECEIVED",
        "the peer sent a fatal alert",
    ),
    (
        -15,
        "GNUTLS_E_UNEXPECTED_PACKET",
        "the peer sent an unexpected message",
    ),
    (
        -19,
        "GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET",
        "the peer sent an unexpected handshake message",
    ),
    (
        -24,
        "GNUTLS_E_DECRYPTION_FAILED",
        "a record could not be decrypted",
    ),
    (
        -32,
        "GNUTLS_E_INSUFFICIENT_CREDENTIALS",
        "no certificate or key to offer",
    ),
    (
        -43,
        "GNUTLS_E_CERTIFICATE_ERROR",
        "the peer's certificate is wrong",
    ),
    (
        -49,
        "GNUTLS_E_NO_CERTIFICATE_FOUND",
        "the peer sent no certificate",
    ),
    (-53, "GNUTLS_E_PUSH_ERROR", "sending failed"),
    (-54, "GNUTLS_E_PULL_ERROR", "receiving failed"),
    (
        -87,
        "GNUTLS_E_NO_CIPHER_SUITES",
        "no cipher suite in common with the peer",
    ),
    (
        -110,
        "GNUTLS_E_PREMATURE_TERMINATION",
        "the connection closed during the handshake",
    ),
    (
        -112,
        "GNUTLS_E_CERTIFICATE_REQUIRED",
        "the peer requires a client certificate",
    ),
    (-319, "GNUTLS_E_TIMEDOUT", "the handshake timed out"),
    (
        -348,
        "GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR",
        "the peer's certificate was refused",
    ),
    (
        -423,
        "GNUTLS_E_NO_COMMON_KEY_SHARE",
        "no key exchange group in common with the peer",
    ),
];

impl Handshake {
    pub fn succeeded(&self) -> bool {
        match self.library {
            Verifier::OpenSsl => self.code == 1,
            Verifier::GnuTls => self.code == 0,
        }
    }

    /// The library's name for a failure, and its reason.
    pub fn reason(&self) -> Option<(&'static str, &'static str)> {
        if self.succeeded() {
            return None;
        }
        match self.library {
            Verifier::OpenSsl => Some((
                "SSL_do_handshake 0",
                "the handshake was refused and shut down",
            )),
            Verifier::GnuTls => GNUTLS_ERRORS
                .iter()
                .find(|(code, ..)| *code == self.code)
                .map(|&(_, name, reason)| (name, reason)),
        }
    }
}

impl fmt::Display for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let library = match self.library {
            Verifier::OpenSsl => "OpenSSL",
            Verifier::GnuTls => "GnuTLS",
        };
        if self.succeeded() {
            return write!(f, "TLS handshake done ({library})");
        }
        match self.reason() {
            Some((name, reason)) => write!(f, "TLS handshake failed: {reason} ({library} {name})"),
            None => write!(f, "TLS handshake failed ({library} error {})", self.code),
        }
    }
}

/// Completed handshakes, in all and per second of event time: a server
/// drowning in handshakes (thousands of small files, each a TLS data
/// connection) shows in its peak.
#[derive(Debug, Default)]
pub struct HandshakeRate {
    total: u64,
    /// The second (of boot time) being counted, and its count so far.
    second: u64,
    in_second: u64,
    /// The busiest second since the last report.
    peak: u64,
}

impl HandshakeRate {
    /// A handshake completed at boot time `ns`.
    pub fn note(&mut self, ns: u64) {
        self.total += 1;
        let second = ns / 1_000_000_000;
        if second != self.second {
            self.second = second;
            self.in_second = 0;
        }
        self.in_second += 1;
        self.peak = self.peak.max(self.in_second);
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The busiest second's count since the last call, and starts again
    /// from the current second's.
    pub fn take_peak(&mut self) -> u64 {
        std::mem::replace(&mut self.peak, self.in_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_busiest_second_since_the_last_report() {
        let mut rate = HandshakeRate::default();
        let s = 1_000_000_000;
        for ns in [s, s + 10, s + 20, 2 * s, 3 * s + 5] {
            rate.note(ns);
        }
        assert_eq!((rate.total(), rate.take_peak()), (5, 3));
        // The current second carries over.
        assert_eq!(rate.take_peak(), 1);
        rate.note(3 * s + 6);
        assert_eq!((rate.total(), rate.take_peak()), (6, 2));
    }

    #[test]
    fn each_library_says_done_its_own_way() {
        let openssl = |code| Handshake {
            library: Verifier::OpenSsl,
            code,
        };
        let gnutls = |code| Handshake {
            library: Verifier::GnuTls,
            code,
        };
        assert!(openssl(1).succeeded());
        assert!(!openssl(0).succeeded());
        assert!(gnutls(0).succeeded());
        assert!(!gnutls(1).succeeded());
        assert_eq!(openssl(1).to_string(), "TLS handshake done (OpenSSL)");
        assert_eq!(
            gnutls(-348).to_string(),
            "TLS handshake failed: the peer's certificate was refused \
             (GnuTLS GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR)"
        );
        assert_eq!(
            gnutls(-9999).to_string(),
            "TLS handshake failed (GnuTLS error -9999)"
        );
        assert_eq!(gnutls(0).reason(), None);
    }
}
