//! Where this machine's apt gets Debian from: the archive and the security
//! archive, read from its own sources (one-line `.list` files and deb822
//! `.sources` files), so the project names no mirror of its own.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Debian's release names and aliases; a source for one of these suites
/// (or its `-updates`, `-backports`, `-security`) is Debian's archive.
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// The archive URIs to fetch Debian packages from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archives {
    /// The main archive (suites like `bookworm`, `forky`).
    pub main: String,
    /// The security archive (suites like `bookworm-security`).
    pub security: String,
}

/// The archives the host's apt configuration names.
pub fn host_archives() -> anyhow::Result<Archives> {
    let mut texts = Vec::new();
    for path in source_files()? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        texts.push((path, text));
    }
    archives(&texts).with_context(|| {
        format!(
            "no Debian archive in the apt sources ({}); add one (e.g. with a file in \
             /etc/apt/sources.list.d)",
            texts
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `Dir::Etc::sourcelist` and the `.list`/`.sources` files of
/// `Dir::Etc::sourceparts`, as `apt-config` resolves them.
fn source_files() -> anyhow::Result<Vec<PathBuf>> {
    let output = std::process::Command::new("apt-config")
        .args([
            "shell",
            "LIST",
            "Dir::Etc::sourcelist/f",
            "PARTS",
            "Dir::Etc::sourceparts/d",
        ])
        .output()
        .context("running apt-config (is this a Debian machine?)")?;
    let shell = String::from_utf8_lossy(&output.stdout);
    let value = |name: &str| {
        shell.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('=')?;
            Some(rest.trim_matches('\'').to_owned())
        })
    };
    let list = value("LIST").unwrap_or_else(|| "/etc/apt/sources.list".into());
    let parts = value("PARTS").unwrap_or_else(|| "/etc/apt/sources.list.d/".into());
    let mut files = vec![PathBuf::from(list)];
    if let Ok(entries) = std::fs::read_dir(Path::new(&parts)) {
        let mut parts: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        parts.sort();
        files.extend(parts);
    }
    Ok(files.into_iter().filter(|p| p.exists()).collect())
}

/// The first main and security archive among `(path, text)` source files.
fn archives(files: &[(PathBuf, String)]) -> Option<Archives> {
    let mut main = None;
    let mut security = None;
    for (path, text) in files {
        let entries = if path.extension().is_some_and(|e| e == "sources") {
            deb822_entries(text)
        } else {
            one_line_entries(text)
        };
        for (uri, suites) in entries {
            for suite in suites {
                let (release, pocket) = suite.split_once('-').unwrap_or((suite.as_str(), ""));
                if !DEBIAN_SUITES.contains(&release) {
                    continue;
                }
                let slot = if pocket == "security" || release.ends_with("/updates") {
                    &mut security
                } else {
                    &mut main
                };
                slot.get_or_insert_with(|| uri.trim_end_matches('/').to_owned());
            }
        }
    }
    Some(Archives {
        main: main?,
        security: security?,
    })
}

/// `deb [options] uri suite components...` lines.
fn one_line_entries(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            // Options in brackets come first.
            let rest = match rest.strip_prefix('[') {
                Some(options) => options.split_once(']')?.1.trim_start(),
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_owned();
            let suite = words.next()?.to_owned();
            Some((uri, vec![suite]))
        })
        .collect()
}

/// deb822 stanzas with `Types: deb`, `URIs:` and `Suites:`.
fn deb822_entries(text: &str) -> Vec<(String, Vec<String>)> {
    let mut entries = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let line = line.split('#').next()?;
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        if field("Enabled").is_some_and(|e| e.eq_ignore_ascii_case("no")) {
            continue;
        }
        if !field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb")) {
            continue;
        }
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        let suites: Vec<String> = suites.split_whitespace().map(String::from).collect();
        for uri in uris.split_whitespace() {
            entries.push((uri.to_owned(), suites.clone()));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        list.iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn deb822_sources_give_both_archives_and_others_are_ignored() {
        let found = archives(&files(&[
            (
                "/etc/apt/sources.list.d/vendor.sources",
                "Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n",
            ),
            (
                "/etc/apt/sources.list.d/debian.sources",
                "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\n\
                 Suites: bookworm bookworm-updates\nComponents: main\n\n\
                 Types: deb\nURIs: http://mirror.example/debian-security\n\
                 Suites: bookworm-security\nComponents: main\n",
            ),
        ]));
        assert_eq!(
            found,
            Some(Archives {
                main: "http://mirror.example/debian".into(),
                security: "http://mirror.example/debian-security".into(),
            })
        );
    }

    #[test]
    fn one_line_sources_with_options_and_comments() {
        let found = archives(&files(&[(
            "/etc/apt/sources.list",
            "# deb http://old.example/debian buster main\n\
             deb [arch=amd64 signed-by=/k.gpg] http://a.example/debian bullseye main\n\
             deb http://s.example/debian-security bullseye-security main # trailing\n\
             deb-src http://a.example/debian bullseye main\n",
        )]));
        assert_eq!(
            found,
            Some(Archives {
                main: "http://a.example/debian".into(),
                security: "http://s.example/debian-security".into(),
            })
        );
    }

    #[test]
    fn no_security_archive_is_none() {
        let found = archives(&files(&[(
            "/etc/apt/sources.list",
            "deb http://a.example/debian bookworm main\n",
        )]));
        assert_eq!(found, None);
        let disabled = archives(&files(&[(
            "/etc/apt/sources.list.d/d.sources",
            "Enabled: no\nTypes: deb\nURIs: http://a.example/debian\nSuites: bookworm bookworm-security\n",
        )]));
        assert_eq!(disabled, None);
    }
}
