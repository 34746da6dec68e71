//! A TLS library's verdict on the peer's certificate, as its own code says
//! it: OpenSSL's `X509_V_*` result (`SSL_get_verify_result`), GnuTLS's
//! status bits (`gnutls_certificate_status_t`). The names are the
//! libraries' own (x509_vfy.h, gnutls/x509.h), so an operator can look them
//! up.

use std::fmt;

/// Which library judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verifier {
    OpenSsl,
    GnuTls,
}

impl Verifier {
    /// The library a TLS record's `arg2` names (1 GnuTLS, else OpenSSL).
    pub fn of_record(arg2: i64) -> Self {
        if arg2 == 1 {
            Self::GnuTls
        } else {
            Self::OpenSsl
        }
    }
}

/// One certificate check's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub verifier: Verifier,
    /// The library's code: 0 when the certificate passed.
    pub code: u32,
}

/// OpenSSL's `X509_V_ERR_*` codes that a client meets, with their reasons.
const OPENSSL_REASONS: &[(u32, &str, &str)] = &[
    (
        2,
        "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT",
        "the issuer certificate is unknown",
    ),
    (
        7,
        "X509_V_ERR_CERT_SIGNATURE_FAILURE",
        "the certificate's signature is wrong",
    ),
    (
        9,
        "X509_V_ERR_CERT_NOT_YET_VALID",
        "the certificate is not valid yet",
    ),
    (
        10,
        "X509_V_ERR_CERT_HAS_EXPIRED",
        "the certificate has expired",
    ),
    (
        18,
        "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT",
        "the certificate is self-signed and not trusted",
    ),
    (
        19,
        "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN",
        "a self-signed certificate in the chain is not trusted",
    ),
    (
        20,
        "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
        "the issuer is not a trusted authority here",
    ),
    (
        21,
        "X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE",
        "the certificate's issuer is not in the chain",
    ),
    (23, "X509_V_ERR_CERT_REVOKED", "the certificate is revoked"),
    (
        24,
        "X509_V_ERR_INVALID_CA",
        "an issuer in the chain is not a CA",
    ),
    (
        26,
        "X509_V_ERR_INVALID_PURPOSE",
        "the certificate is not for this purpose",
    ),
    (
        62,
        "X509_V_ERR_HOSTNAME_MISMATCH",
        "the certificate's names do not include the host the client asked for",
    ),
    (
        64,
        "X509_V_ERR_IP_ADDRESS_MISMATCH",
        "the certificate does not name the address the client dialled",
    ),
];

/// GnuTLS's status bits, with their reasons.
const GNUTLS_REASONS: &[(u32, &str, &str)] = &[
    (1 << 5, "GNUTLS_CERT_REVOKED", "the certificate is revoked"),
    (
        1 << 6,
        "GNUTLS_CERT_SIGNER_NOT_FOUND",
        "the issuer is not a trusted authority here",
    ),
    (
        1 << 7,
        "GNUTLS_CERT_SIGNER_NOT_CA",
        "an issuer in the chain is not a CA",
    ),
    (
        1 << 8,
        "GNUTLS_CERT_INSECURE_ALGORITHM",
        "the certificate uses an insecure algorithm",
    ),
    (
        1 << 9,
        "GNUTLS_CERT_NOT_ACTIVATED",
        "the certificate is not valid yet",
    ),
    (
        1 << 10,
        "GNUTLS_CERT_EXPIRED",
        "the certificate has expired",
    ),
    (
        1 << 11,
        "GNUTLS_CERT_SIGNATURE_FAILURE",
        "the certificate's signature is wrong",
    ),
    (
        1 << 14,
        "GNUTLS_CERT_UNEXPECTED_OWNER",
        "the certificate's names do not include the host the client asked for",
    ),
];

/// GnuTLS's summary bit, set with any reason.
const GNUTLS_CERT_INVALID: u32 = 1 << 1;

impl Verdict {
    pub fn passed(&self) -> bool {
        self.code == 0
    }

    /// The library's names for the code (several for GnuTLS's bits), and
    /// what each means; the code itself when the library's list here lacks it.
    pub fn reasons(&self) -> Vec<(String, &'static str)> {
        if self.passed() {
            return Vec::new();
        }
        let found: Vec<(String, &'static str)> = match self.verifier {
            Verifier::OpenSsl => OPENSSL_REASONS
                .iter()
                .filter(|(code, ..)| *code == self.code)
                .map(|(_, name, why)| ((*name).to_owned(), *why))
                .collect(),
            Verifier::GnuTls => GNUTLS_REASONS
                .iter()
                .filter(|(bit, ..)| self.code & bit != 0)
                .map(|(_, name, why)| ((*name).to_owned(), *why))
                .collect(),
        };
        if found.is_empty() {
            let code = match self.verifier {
                Verifier::OpenSsl => format!("X509_V_ERR {}", self.code),
                Verifier::GnuTls => format!("status {:#x}", self.code & !GNUTLS_CERT_INVALID),
            };
            return vec![(code, "the certificate was refused")];
        }
        found
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OpenSsl => "OpenSSL",
            Self::GnuTls => "GnuTLS",
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            return write!(f, "{} verified the peer's certificate", self.verifier);
        }
        write!(f, "{} refused the peer's certificate:", self.verifier)?;
        for (n, (name, why)) in self.reasons().iter().enumerate() {
            let sep = if n == 0 { " " } else { "; " };
            write!(f, "{sep}{why} ({name})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_library_names_its_own_codes() {
        let mismatch = Verdict {
            verifier: Verifier::OpenSsl,
            code: 62,
        };
        assert_eq!(
            mismatch.to_string(),
            "OpenSSL refused the peer's certificate: the certificate's names do not include \
             the host the client asked for (X509_V_ERR_HOSTNAME_MISMATCH)"
        );
        let expired_unknown = Verdict {
            verifier: Verifier::GnuTls,
            code: GNUTLS_CERT_INVALID | 1 << 6 | 1 << 10,
        };
        assert_eq!(
            expired_unknown
                .reasons()
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["GNUTLS_CERT_SIGNER_NOT_FOUND", "GNUTLS_CERT_EXPIRED"]
        );
        let odd = Verdict {
            verifier: Verifier::OpenSsl,
            code: 4242,
        };
        assert_eq!(odd.reasons()[0].0, "X509_V_ERR 4242");
        let ok = Verdict {
            verifier: Verifier::GnuTls,
            code: 0,
        };
        assert!(ok.passed() && ok.reasons().is_empty());
        assert_eq!(ok.to_string(), "GnuTLS verified the peer's certificate");
    }
}
