//! Every JSON line the suite sees, held to schema/lines.schema.json by a
//! real validator (the `jsonschema` crate: draft 2020-12, formats checked,
//! the JSON-Schema test suite's), compiled once per test process.

use std::sync::OnceLock;

use serde_json::Value;

use crate::workspace_root;

/// Invalid lines a failure names at most.
const NAMED: usize = 20;

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

/// Panics, naming the invalid lines, unless every one is valid.
#[track_caller]
pub fn assert_valid<'a>(label: &str, lines: impl IntoIterator<Item = &'a str>) {
    let invalid = invalid_lines(lines);
    assert!(
        invalid.is_empty(),
        "{label}: lines break schema/lines.schema.json:\n{invalid}"
    );
}
