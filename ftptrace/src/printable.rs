//! Text safe to show a person at a terminal. The bytes of an FTP reply or
//! command are a stranger's, a process name is any local user's: control
//! characters could drive the terminal (move the cursor, retitle the
//! window, hide what follows) and bidirectional or invisible formatting
//! characters could make a line read differently from what it says. Every
//! value printed as text goes through [`printable`].

use std::borrow::Cow;

/// `text` with control characters (`\u{1b}`, `\t`) and bidi or invisible
/// formatting characters (`\u{202e}`) escaped; everything else as it is.
/// Printable ASCII, nearly every line, is returned as it is without a copy.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.bytes().all(|b| (b' '..b'\x7f').contains(&b)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else if is_formatting(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Unicode characters that reorder, hide or break text without showing:
/// the bidi embeddings, overrides, isolates and marks, zero-width
/// characters, the byte order mark, soft hyphen, interlinear annotations,
/// the line and paragraph separators, the prepended concatenation marks
/// (Arabic, Syriac, Kaithi...), and the invisible tag characters.
pub fn is_formatting(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn controls_and_bidi_are_escaped_and_the_rest_kept() {
        assert_eq!(
            printable("226 Transfer\u{1b}[31m ok"),
            "226 Transfer\\u{1b}[31m ok"
        );
        assert_eq!(printable("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(
            printable("a\u{2066}b\u{2069}c\u{200b}d"),
            "a\\u{2066}b\\u{2069}c\\u{200b}d"
        );
        assert_eq!(printable("line\nbreak\ttab\r"), "line\\nbreak\\ttab\\r");
        assert_eq!(printable("Zürich 東京 ok"), "Zürich 東京 ok");
        // Escaping twice changes nothing more.
        let once = printable("x\u{1b}y\u{202e}");
        assert_eq!(printable(&once), once);
    }
}
