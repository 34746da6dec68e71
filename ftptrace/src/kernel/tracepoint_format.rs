//! Parser for tracefs `format` files (`/sys/kernel/tracing/events/*/*/format`).
//!
//! The kernel describes each tracepoint record there: field names, offsets,
//! sizes, and a `print fmt` whose `__print_symbolic(...)` tables name enum
//! values (TCP states, reset reasons). These files are the truth for the
//! running kernel; nothing about a layout is compiled into ftptrace.

use crate::event::Name;
use std::collections::BTreeMap;

/// One `field:` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C declaration without the name, e.g. `const void *` or `__u8[28]`.
    pub c_type: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

/// A parsed `format` file.
#[derive(Clone, Debug)]
pub struct TracepointFormat {
    pub name: String,
    pub fields: Vec<Field>,
    pub print_fmt: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("line {line}: malformed field description: {text:?}")]
    BadField { line: usize, text: String },
    #[error("no `name:` line")]
    NoName,
}

/// Values of an enum as the kernel prints them: number → name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolTable(BTreeMap<i64, Name>);

impl SymbolTable {
    pub fn name(&self, value: i64) -> Option<&Name> {
        self.0.get(&value)
    }

    #[cfg(test)]
    pub fn value(&self, name: &str) -> Option<i64> {
        self.0
            .iter()
            .find_map(|(value, n)| (&**n == name).then_some(*value))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(number, name)` in ascending order of number.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &str)> {
        self.0.iter().map(|(value, name)| (*value, &**name))
    }

    pub fn insert(&mut self, value: i64, name: &str) {
        self.0.insert(value, Name::from(name));
    }
}

impl TracepointFormat {
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut name = None;
        let mut fields = Vec::new();
        let mut print_fmt = String::new();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if let Some(rest) = trimmed.strip_prefix("name:") {
                name = Some(rest.trim().to_owned());
            } else if trimmed.starts_with("field:") {
                let field = parse_field(trimmed).ok_or_else(|| FormatError::BadField {
                    line: index + 1,
                    text: trimmed.to_owned(),
                })?;
                // The common_* header is overwritten for BPF programs (the
                // kernel stores a pt_regs pointer there), so it is useless.
                if !field.name.starts_with("common_") {
                    fields.push(field);
                }
            } else if let Some(rest) = trimmed.strip_prefix("print fmt:") {
                rest.trim().clone_into(&mut print_fmt);
            }
        }
        Ok(Self {
            name: name.ok_or(FormatError::NoName)?,
            fields,
            print_fmt,
        })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.name == name)
    }

    /// The `__print_symbolic(REC-><field>, { value, "NAME" }, ...)` table for
    /// `field`, with values that are still C identifiers (the kernel leaves
    /// some unresolved, e.g. `TCP_ESTABLISHED`) resolved through `resolve`.
    /// `None` when the print format has no such table.
    pub fn symbols(
        &self,
        field: &str,
        resolve: impl Fn(&str) -> Option<i64>,
    ) -> Option<SymbolTable> {
        let needle = format!("__print_symbolic(REC->{field},");
        let start = self.print_fmt.find(&needle)? + needle.len();
        let mut table = SymbolTable::default();
        let mut rest = &self.print_fmt[start..];
        loop {
            rest = rest.trim_start();
            let Some(after_brace) = rest.strip_prefix('{') else {
                break;
            };
            let close = after_brace.find('}')?;
            let entry = &after_brace[..close];
            rest = after_brace[close + 1..].trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
            let (value, name) = entry.split_once(',')?;
            let name = name.trim().trim_matches('"');
            let value = value.trim();
            let value = parse_int(value).or_else(|| resolve(value));
            if let Some(value) = value {
                table.insert(value, name);
            }
        }
        (!table.is_empty()).then_some(table)
    }
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else {
        text.parse().ok()
    }
}

/// `field:const void * skaddr; offset:8; size:8; signed:0;`
fn parse_field(line: &str) -> Option<Field> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for part in line.split(';') {
        let part = part.trim();
        if let Some(rest) = part.strip_prefix("field:") {
            decl = Some(rest.trim());
        } else if let Some(rest) = part.strip_prefix("offset:") {
            offset = rest.trim().parse().ok();
        } else if let Some(rest) = part.strip_prefix("size:") {
            size = rest.trim().parse().ok();
        } else if let Some(rest) = part.strip_prefix("signed:") {
            signed = rest.trim() == "1";
        }
    }
    let decl = decl?;
    // The name is the last identifier; an array suffix belongs to the type.
    let (head, array) = match decl.find('[') {
        Some(bracket) => (decl[..bracket].trim_end(), &decl[bracket..]),
        None => (decl, ""),
    };
    // Where the name starts: after the last character that cannot be in
    // one (which may be any character, of any length in UTF-8).
    let (at, before) = head
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))?;
    let start = at + before.len_utf8();
    let name = head[start..].to_owned();
    if name.is_empty() {
        return None;
    }
    let c_type = format!("{}{array}", head[..start].trim_end());
    Some(Field {
        name,
        c_type,
        offset: offset?,
        size: size?,
        signed,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    /// Found by `cargo xtask fuzz` (target `tracepoint_format`): a
    /// multi-byte character before the name was sliced through.
    #[test]
    fn a_field_after_any_character_parses_or_is_refused() {
        let text = "name: x\nfield:\u{1e}\u{2de}ab;\toffset:8;\tsize:4;\tsigned:0;\n";
        let format = super::TracepointFormat::parse(text).unwrap();
        assert_eq!(format.fields[0].name, "ab");
        assert_eq!(format.fields[0].c_type, "\u{1e}\u{2de}");
        assert!(super::TracepointFormat::parse("name: x\nfield:\0\u{1e}\u{2de};\n").is_err());
    }

    use super::*;

    pub(crate) fn testdata_format(
        kernel: &str,
        category: &str,
        event: &str,
    ) -> Option<TracepointFormat> {
        let path = format!(
            "{}/testdata/tracepoint-formats/{kernel}/{category}/{event}.format",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).ok()?;
        Some(TracepointFormat::parse(&text).expect("test data parses"))
    }

    pub(crate) fn kernels() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/tracepoint-formats");
        let mut kernels: Vec<String> = std::fs::read_dir(dir)
            .expect("testdata dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        kernels.sort();
        kernels
    }

    const SEND_RESET_6_18: &str =
        include_str!("../../testdata/tracepoint-formats/6.18/tcp/tcp_send_reset.format");

    #[test]
    fn parses_fields_and_skips_the_common_header() {
        let format = TracepointFormat::parse(SEND_RESET_6_18).unwrap();
        assert_eq!(format.name, "tcp_send_reset");
        let names: Vec<_> = format.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["skbaddr", "skaddr", "state", "reason", "saddr", "daddr"]
        );
        let saddr = format.field("saddr").unwrap();
        assert_eq!((saddr.offset, saddr.size), (32, 28));
        assert_eq!(saddr.c_type, "__u8[28]");
        assert_eq!(format.field("skaddr").unwrap().c_type, "const void *");
    }

    #[test]
    fn reads_numeric_symbol_tables() {
        let format = TracepointFormat::parse(SEND_RESET_6_18).unwrap();
        let reasons = format.symbols("reason", |_| None).unwrap();
        assert_eq!(reasons.name(1).map(|n| &**n), Some("NO_SOCKET"));
        assert_eq!(reasons.value("TCP_KEEPALIVE_TIMEOUT"), Some(15));
    }

    #[test]
    fn resolves_identifier_values_through_the_resolver() {
        let format = TracepointFormat::parse(SEND_RESET_6_18).unwrap();
        let states = format
            .symbols("state", |name| (name == "TCP_SYN_SENT").then_some(2))
            .unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states.name(2).map(|n| &**n), Some("TCP_SYN_SENT"));
        assert!(format.symbols("state", |_| None).is_none());
    }

    #[test]
    fn a_missing_table_is_none() {
        let format = TracepointFormat::parse(SEND_RESET_6_18).unwrap();
        assert!(format.symbols("skaddr", |_| Some(0)).is_none());
    }

    #[test]
    fn rejects_a_garbled_field_line() {
        let text = "name: x\nformat:\n\tfield:int;\toffset:8;\tsize:4;\tsigned:1;\n";
        assert!(matches!(
            TracepointFormat::parse(text),
            Err(FormatError::BadField { line: 3, .. })
        ));
        assert_eq!(
            TracepointFormat::parse("format:\n").unwrap_err(),
            FormatError::NoName
        );
    }
}
