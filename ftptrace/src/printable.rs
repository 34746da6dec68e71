//! Text safe to show a person: the peer chose the bytes of an FTP reply, a
//! local user chose a process name. Control characters are escaped so that
//! they cannot drive the terminal.

/// The text with control characters escaped, so a peer cannot drive the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}
