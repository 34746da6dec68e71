//! The TLS libraries FTP servers and clients link, where their files are on
//! this host, and which of their functions the `tls_plaintext` programs
//! (ftptrace-ebpf) watch. A uprobe is placed on a file: it fires in every
//! process that maps that file, those started later too.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// What the operator asked of the TLS probe.
#[derive(Clone, Debug, Default)]
pub struct TlsWatch {
    /// `--no-tls-plaintext`.
    pub off: bool,
    /// `--tls-library`: files to watch beside the ones found.
    pub libraries: Vec<PathBuf>,
}

impl TlsWatch {
    /// The first `--tls-library` that is not a TLS library file this
    /// probe knows, with why.
    pub fn invalid(&self) -> Option<String> {
        self.libraries.iter().find_map(|path| {
            if !WATCHED.iter().any(|l| is_file_of(l, path)) {
                let names: Vec<&str> = WATCHED
                    .iter()
                    .flat_map(|l| l.file_names.iter().copied())
                    .collect();
                return Some(format!(
                    "--tls-library {}: not a library ftptrace watches (its file name is one of {})",
                    path.display(),
                    names.join(", ")
                ));
            }
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => None,
                Ok(_) => Some(format!("--tls-library {}: not a file", path.display())),
                Err(e) => Some(format!("--tls-library {}: {e}", path.display())),
            }
        })
    }
}

/// A TLS library: the file names it goes by, and each watched function with
/// the program its entry runs (and whether its return runs `tls_return`).
#[derive(Debug)]
pub struct Library {
    pub name: &'static str,
    file_names: &'static [&'static str],
    pub functions: &'static [(&'static str, &'static str)],
    pub returns: bool,
}

pub const OPENSSL: Library = Library {
    name: "OpenSSL",
    file_names: &["libssl.so.3", "libssl.so.1.1"],
    functions: &[
        ("SSL_read", "openssl_read"),
        ("SSL_read_ex", "openssl_read_ex"),
        ("SSL_write", "openssl_write"),
        ("SSL_write_ex", "openssl_write_ex"),
        // SSL_accept and SSL_connect call it.
        ("SSL_do_handshake", "openssl_handshake"),
        ("SSL_get_verify_result", "openssl_verify_result"),
    ],
    returns: true,
};

pub const GNUTLS: Library = Library {
    name: "GnuTLS",
    file_names: &["libgnutls.so.30"],
    functions: &[
        ("gnutls_record_recv", "gnutls_recv"),
        ("gnutls_record_send", "gnutls_send"),
        ("gnutls_handshake", "gnutls_handshake"),
        ("gnutls_certificate_verify_peers2", "gnutls_verify_peers2"),
        ("gnutls_certificate_verify_peers3", "gnutls_verify_peers3"),
        (
            "gnutls_session_get_verify_cert_status",
            "gnutls_verify_status",
        ),
    ],
    returns: true,
};

/// OpenSSL's errors, recorded in libcrypto: why a TLS call failed, and the
/// alerts the peer sent.
pub const OPENSSL_ERRORS: Library = Library {
    name: "OpenSSL errors",
    file_names: &["libcrypto.so.3"],
    functions: &[("ERR_vset_error", "openssl_error")],
    returns: false,
};

/// The alerts GnuTLS sends: entries only, as a return probe there would
/// end the handshake call that sends one (`tls_return` keys by thread).
pub const GNUTLS_ALERTS: Library = Library {
    name: "GnuTLS alerts",
    file_names: &["libgnutls.so.30"],
    functions: &[("gnutls_alert_send", "gnutls_alert_sent")],
    returns: false,
};

/// The TLS libraries a process maps to have its plaintext watched.
pub const LIBRARIES: [&Library; 2] = [&OPENSSL, &GNUTLS];
/// Every library file the probe places uprobes on.
pub const WATCHED: [&Library; 4] = [&OPENSSL, &GNUTLS, &OPENSSL_ERRORS, &GNUTLS_ALERTS];

/// The program every watched function's return runs.
pub const RETURN_PROGRAM: &str = "tls_return";
/// The program that ties a TLS object to the socket its thread reads.
pub const TIE_PROGRAM: &str = "tls_socket_read";
pub const TIE_TRACEPOINT: &str = "tcp_rcv_space_adjust";

/// Where distributions put shared libraries.
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// Every file of `library` on this host: the ones `given` names, those in
/// the usual directories, and those running processes have mapped (a
/// container's through its root), one path per file.
pub fn files_of(library: &Library, given: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    let mut add = |path: PathBuf| {
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.is_file()
            && seen.insert((meta.dev(), meta.ino()))
        {
            files.push(path);
        }
    };
    for path in given {
        if is_file_of(library, path) {
            add(path.clone());
        }
    }
    for dir in LIBRARY_DIRS {
        for name in library.file_names {
            add(Path::new(dir).join(name));
        }
    }
    for path in mapped_files(library) {
        add(path);
    }
    files
}

/// Whether `path`'s name is one of `library`'s.
pub fn is_file_of(library: &Library, path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| library.file_names.contains(&name))
}

/// The files of `library` that processes have mapped now, each as this
/// process can open it (through `/proc/<pid>/root`: a container's files
/// are in its own mount namespace).
fn mapped_files(library: &Library) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for pid in super::procfs::pids() {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for path in maps_paths(&maps) {
            if is_file_of(library, Path::new(path)) {
                found.push(Path::new("/proc").join(&pid).join("root").join(&path[1..]));
            }
        }
    }
    found
}

/// The absolute paths of a `/proc/<pid>/maps` text, once each.
fn maps_paths(maps: &str) -> Vec<&str> {
    let mut paths: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .collect();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_give_each_mapped_file_once() {
        let maps = "\
7f0000000000-7f0000001000 r--p 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000001000-7f0000002000 r-xp 00001000 08:01 42 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000003000-7f0000004000 rw-p 00000000 00:00 0 
7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(maps_paths(maps), ["/usr/lib/x86_64-linux-gnu/libssl.so.3"]);
    }

    #[test]
    fn a_library_is_known_by_its_file_names() {
        assert!(is_file_of(&OPENSSL, Path::new("/lib/libssl.so.3")));
        assert!(is_file_of(&GNUTLS, Path::new("/x/libgnutls.so.30")));
        assert!(!is_file_of(&OPENSSL, Path::new("/lib/libcrypto.so.3")));
    }
}
