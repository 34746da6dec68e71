//! An alert a TLS library sends on an FTP connection, as GnuTLS's
//! `gnutls_alert_send` is called: a handshake that refuses its peer sends a
//! fatal one itself (`unknown_ca`, `certificate_expired`, ...), `gnutls_bye`
//! a close_notify. The receiving end's library may record it too
//! (OpenSSL's `tls_error`); this is the sender's own word, which names the
//! end that refused. The names are RFC 8446's (`tls_error`'s table).

use std::fmt;

use crate::tls_verify::Verifier;

/// TLS's alert levels (RFC 5246 section 7.2).
const WARNING: u8 = 1;
const FATAL: u8 = 2;

/// One alert a library sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentAlert {
    pub library: Verifier,
    pub level: u8,
    pub description: u8,
}

impl SentAlert {
    /// From a record's `arg1`: the level << 8 | the description.
    pub fn of_record(library: Verifier, arg1: i64) -> Self {
        Self {
            library,
            level: (arg1 >> 8) as u8,
            description: arg1 as u8,
        }
    }

    /// A fatal alert ends the TLS session: its sender refused something.
    pub fn fatal(&self) -> bool {
        self.level == FATAL
    }

    /// The level's name (`warning`, `fatal`), if it is one.
    pub fn level_name(&self) -> Option<&'static str> {
        match self.level {
            WARNING => Some("warning"),
            FATAL => Some("fatal"),
            _ => None,
        }
    }

    /// The alert's RFC name, if it is one `tls_error` knows.
    pub fn name(&self) -> Option<&'static str> {
        crate::tls_error::alert(u32::from(self.description)).map(|(name, _)| name)
    }
}

impl fmt::Display for SentAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sent ", self.library)?;
        match self.level_name() {
            Some("warning") | None => {}
            Some(level) => write!(f, "{level} ")?,
        }
        match self.name() {
            Some(name) => write!(f, "alert {name}"),
            None => write!(f, "alert {}", self.description),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_gives_the_level_and_the_description() {
        let refused = SentAlert::of_record(Verifier::GnuTls, 2 << 8 | 48);
        assert!(refused.fatal());
        assert_eq!(refused.to_string(), "GnuTLS sent fatal alert unknown_ca");
        let bye = SentAlert::of_record(Verifier::GnuTls, 1 << 8);
        assert!(!bye.fatal());
        assert_eq!(bye.level_name(), Some("warning"));
        assert_eq!(bye.to_string(), "GnuTLS sent alert close_notify");
        let odd = SentAlert::of_record(Verifier::GnuTls, 7 << 8 | 250);
        assert_eq!((odd.level_name(), odd.name()), (None, None));
        assert_eq!(odd.to_string(), "GnuTLS sent alert 250");
    }
}
