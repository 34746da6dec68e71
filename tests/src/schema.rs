//! Every JSON line the suite sees, held to schema/lines.schema.json by a
//! real validator (the `jsonschema` crate: draft 2020-12, formats checked,
//! the JSON-Schema test suite's), compiled once per test process.

use std::sync::OnceLock;

use serde_json::Value;

use crate::workspace_root;

/// Invalid lines a failure names at most.
const NAMED: usize = 20;

/// Lines of one sort (an event's kind, a session's cause) checked at most
/// in one run: checking all 700,000 lines of a churn run took 25 s of its
/// test's two minutes, and its 50,000th session has no shape its first
/// thousand lack. Every other line is checked.
const LINES_PER_SORT: usize = 2000;

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = workspace_root().join("schema/lines.schema.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()))
    })
}

/// The lines of `lines` that break the schema, each with why (at most
/// [`NAMED`], then a count); empty when all are valid.
pub fn invalid_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let validator = validator();
    let mut named = Vec::new();
    let mut invalid = 0;
    for (n, line) in lines.into_iter().enumerate() {
        let errors: Vec<String> = match serde_json::from_str::<Value>(line) {
            Err(e) => vec![format!("not JSON: {e}")],
            Ok(value) if validator.is_valid(&value) => continue,
            Ok(value) => validator
                .iter_errors(&value)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect(),
        };
        invalid += 1;
        if named.len() < NAMED {
            let line: String = line.chars().take(400).collect();
            named.push(format!("line {}: {}\n  {line}", n + 1, errors.join("; ")));
        }
    }
    if invalid > named.len() {
        named.push(format!("... {} more", invalid - named.len()));
    }
    named.join("\n")
}

/// Panics, naming the invalid lines, unless every one is valid: the first
/// [`LINES_PER_SORT`] events of each kind and sessions of each cause, and
/// every other line.
#[track_caller]
pub fn assert_valid<'a>(label: &str, lines: impl IntoIterator<Item = &'a str>) {
    let mut seen = std::collections::HashMap::<(&str, &str), usize>::new();
    let sampled = lines.into_iter().filter(|line| {
        let Some(sort) = sort(line) else {
            return true;
        };
        let count = seen.entry(sort).or_default();
        *count += 1;
        *count <= LINES_PER_SORT
    });
    let invalid = invalid_lines(sampled);
    assert!(
        invalid.is_empty(),
        "{label}: lines break schema/lines.schema.json:\n{invalid}"
    );
}

/// An event line's kind or a session line's cause, as the writer prints
/// them (`type` first; a quote inside a string is escaped, so the field's
/// name cannot be matched inside a value), `None` for any other line: a
/// cheap look that only decides what to sample.
fn sort(line: &str) -> Option<(&'static str, &str)> {
    let (sort, field) = if line.starts_with(r#"{"type":"event","#) {
        ("event", r#","kind":"#)
    } else if line.starts_with(r#"{"type":"session","#) {
        ("session", r#","cause":"#)
    } else {
        return None;
    };
    let (_, rest) = line.split_once(field)?;
    rest.split_once([',', '}']).map(|(value, _)| (sort, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_sort_by_kind_sessions_by_cause() {
        assert_eq!(
            sort(r#"{"type":"event","schema":2,"kind":"state","old_state":"LISTEN"}"#),
            Some(("event", r#""state""#))
        );
        assert_eq!(
            sort(r#"{"type":"session","text":"\"cause\":1","cause":null}"#),
            Some(("session", "null"))
        );
        assert_eq!(sort(r#"{"type":"stats","kind":"state"}"#), None);
        assert_eq!(sort(r#"{"type":"event","schema":2}"#), None);
    }
}
