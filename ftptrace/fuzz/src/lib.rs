//! What the fuzz targets share: a byte reader for structured inputs, a
//! decoder that needs no kernel, an in-memory output, and the checks on
//! what ftptrace prints.

use std::{cell::RefCell, io, rc::Rc};

use ftptrace::{
    kernel::{
        decode::Decoder, kallsyms::KernelSymbols, names::KernelNames,
        tracepoint_format::SymbolTable,
    },
    printable::is_formatting,
};

/// Reads a fuzz input as a sequence of choices; past its end every read
/// gives zeros, so any input is a complete program.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        let taken = self.take(8);
        bytes[..taken.len()].copy_from_slice(taken);
        u64::from_le_bytes(bytes)
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// Kernel enum names as a 6.x kernel has them, without reading tracefs:
/// Linux's TCP states, and reason numbers the decoder looks up, with some
/// it does not know.
pub fn kernel_names() -> KernelNames {
    let table = |pairs: &[(i64, &str)]| {
        let mut table = SymbolTable::default();
        for &(value, name) in pairs {
            table.insert(value, name);
        }
        table
    };
    KernelNames::new(
        KernelNames::linux_defaults().tcp_states,
        Some(table(&[
            (0, "NOT_SPECIFIED"),
            (1, "NO_SOCKET"),
            (15, "TCP_KEEPALIVE_TIMEOUT"),
        ])),
        Some(table(&[
            (2, "NOT_SPECIFIED"),
            (3, "NO_SOCKET"),
            (12, "NETFILTER_DROP"),
        ])),
    )
}

/// A decoder that names one kernel function (drop locations) and never
/// reads /proc/kallsyms.
pub fn decoder() -> Decoder {
    Decoder::with_symbols(
        kernel_names(),
        KernelSymbols::from_text(
            "ffffffff81900000 T nf_hook_slow\nffffffff81a00000 T tcp_v4_rcv\n",
        ),
    )
}

/// An `Output` sink whose bytes stay readable after the output is dropped.
#[derive(Clone, Default)]
pub struct SharedSink(Rc<RefCell<Vec<u8>>>);

impl SharedSink {
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

impl io::Write for SharedSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Panics unless `line` is safe at a terminal, as printable text must be.
pub fn assert_printable(line: &str) {
    if let Some(c) = line.chars().find(|&c| c.is_control() || is_formatting(c)) {
        panic!("{c:?} left unescaped in {line:?}");
    }
}

/// Panics unless every line of `out` is one JSON object with a `type`.
pub fn assert_json_lines(out: &str) {
    assert!(
        out.is_empty() || out.ends_with('\n'),
        "cut last line: {out:?}"
    );
    for line in out.split_terminator('\n') {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(
            value.get("type").is_some_and(serde_json::Value::is_string),
            "JSON line without a type: {line}"
        );
    }
}

/// Panics unless every line of text output is printable.
pub fn assert_text_lines(out: &str) {
    assert!(
        out.is_empty() || out.ends_with('\n'),
        "cut last line: {out:?}"
    );
    // Not `lines()`: it would hide a CR before the LF.
    for line in out.split_terminator('\n') {
        assert_printable(line);
    }
}
