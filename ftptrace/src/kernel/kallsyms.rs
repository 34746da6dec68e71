//! Kernel code addresses → function names, from /proc/kallsyms. Used for a
//! dropped packet's `location` (the function that freed it), the only hint
//! of why on kernels without drop reasons (before 5.17). The text symbols
//! are read once, at the first lookup (about 5 MB for 120k functions), and
//! looked up by binary search: under churn, a scan of the file per new
//! address stalled the tracer for 50 ms a time.

use std::collections::HashMap;

use crate::event::Name;

pub const PATH: &str = "/proc/kallsyms";

/// Addresses remembered at most; past it, lookups still work, uncached.
const CACHE_LIMIT: usize = 4096;

pub struct KernelSymbols {
    /// Where the symbol table is read from (`/proc/kallsyms`), or a fixed
    /// text for tests.
    source: Source,
    cache: HashMap<u64, Option<Name>>,
    /// Every text symbol, read at the first lookup.
    table: Option<SymbolTable>,
    /// Addresses named since the last [`Self::take_named`], for a recording.
    named: Vec<(u64, String)>,
}

enum Source {
    File(&'static str),
    Text(String),
    /// Names already resolved (by a recording's run): nothing else is known.
    Resolved,
}

impl KernelSymbols {
    pub fn from_proc() -> Self {
        Self::with_source(Source::File(PATH))
    }

    pub fn from_text(text: impl Into<String>) -> Self {
        Self::with_source(Source::Text(text.into()))
    }

    /// Only these addresses have names: what a recorded run resolved.
    pub fn resolved(names: impl IntoIterator<Item = (u64, String)>) -> Self {
        let mut symbols = Self::with_source(Source::Resolved);
        symbols.cache = names
            .into_iter()
            .map(|(addr, name)| (addr, Some(Name::from(name))))
            .collect();
        symbols
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            cache: HashMap::new(),
            table: None,
            named: Vec::new(),
        }
    }

    /// The addresses first named since the last call, with their names.
    pub fn take_named(&mut self) -> Vec<(u64, String)> {
        std::mem::take(&mut self.named)
    }

    /// The function containing `addr`, or `None` when unknown (addresses
    /// hidden by kernel.kptr_restrict read as 0 and match nothing).
    pub fn function(&mut self, addr: u64) -> Option<Name> {
        if addr == 0 {
            return None;
        }
        if let Some(known) = self.cache.get(&addr) {
            return known.clone();
        }
        let found = self.containing(addr);
        if let Some(name) = &found
            && self.named.len() < CACHE_LIMIT
        {
            self.named.push((addr, name.clone()));
        }
        let found = found.map(Name::from);
        if self.cache.len() < CACHE_LIMIT {
            self.cache.insert(addr, found.clone());
        }
        found
    }

    /// The name of the function containing `addr`: the text symbol with
    /// the highest start at or below it.
    fn containing(&mut self, addr: u64) -> Option<String> {
        let table = match (&self.table, &self.source) {
            (_, Source::Resolved) => return None,
            (Some(table), _) => table,
            (None, Source::File(path)) => self
                .table
                .insert(SymbolTable::of(&std::fs::read_to_string(path).ok()?)),
            (None, Source::Text(text)) => self.table.insert(SymbolTable::of(text)),
        };
        table.containing(addr).map(str::to_owned)
    }
}

/// Text symbols by start address, their names in one string.
struct SymbolTable {
    /// Sorted; of several symbols at one address, the first in the file
    /// (an alias comes later).
    starts: Vec<u64>,
    /// Where each start's name is in `names`.
    spans: Vec<(u32, u32)>,
    names: String,
}

impl SymbolTable {
    fn of(kallsyms: &str) -> Self {
        let mut names = String::new();
        let mut symbols = Vec::new();
        for (start, name) in text_symbols(kallsyms) {
            let begin = names.len() as u32;
            names.push_str(name);
            symbols.push((start, (begin, names.len() as u32)));
        }
        // Stable: equal starts keep the file's order, and the first stays.
        symbols.sort_by_key(|&(start, _)| start);
        symbols.dedup_by_key(|&mut (start, _)| start);
        Self {
            starts: symbols.iter().map(|&(start, _)| start).collect(),
            spans: symbols.iter().map(|&(_, span)| span).collect(),
            names,
        }
    }

    /// The name of the symbol with the highest start at or below `addr`.
    fn containing(&self, addr: u64) -> Option<&str> {
        let at = self
            .starts
            .partition_point(|&start| start <= addr)
            .checked_sub(1)?;
        let (begin, end) = self.spans[at];
        self.names.get(begin as usize..end as usize)
    }
}

/// The text symbols of a kallsyms text, with their (non-zero) starts.
fn text_symbols(kallsyms: &str) -> impl Iterator<Item = (u64, &str)> {
    symbols(kallsyms)
        .filter(|&(start, kind, _)| matches!(kind, "t" | "T") && start != 0)
        .map(|(start, _, name)| (start, name))
}

/// The lines of a kallsyms text: address, symbol type, name. Lines that
/// do not parse are skipped.
pub fn symbols(kallsyms: &str) -> impl Iterator<Item = (u64, &str, &str)> {
    kallsyms.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, kind, name) = (fields.next()?, fields.next()?, fields.next()?);
        Some((u64::from_str_radix(start, 16).ok()?, kind, name))
    })
}

/// The address of symbol `name` (0 when kernel.kptr_restrict hides it).
pub fn address_of(kallsyms: &str, name: &str) -> Option<u64> {
    symbols(kallsyms).find_map(|(addr, _, symbol)| (symbol == name).then_some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000000 T _stext
ffffffff81a00000 t tcp_v4_rcv
ffffffff81a00800 T tcp_v4_early_demux
ffffffff81900000 T nf_hook_slow
ffffffff81a00400 d some_data
ffffffffc0001000 t nft_do_chain\t[nf_tables]
";

    #[test]
    fn an_address_belongs_to_the_nearest_text_symbol_below_it() {
        let mut symbols = KernelSymbols::from_text(KALLSYMS);
        assert_eq!(
            symbols.function(0xffffffff81a0049c).as_deref(),
            Some("tcp_v4_rcv")
        );
        assert_eq!(
            symbols.function(0xffffffff8190001c).as_deref(),
            Some("nf_hook_slow")
        );
        assert_eq!(
            symbols.function(0xffffffffc0001010).as_deref(),
            Some("nft_do_chain")
        );
        assert_eq!(symbols.function(0x1000), None);
        assert_eq!(symbols.function(0), None);
    }

    #[test]
    fn names_found_are_handed_out_once_and_replay_without_the_table() {
        let mut symbols = KernelSymbols::from_text(KALLSYMS);
        symbols.function(0xffffffff81a0049c);
        symbols.function(0xffffffff81a0049c);
        symbols.function(0x1000);
        let named = symbols.take_named();
        assert_eq!(named, [(0xffffffff81a0049c, "tcp_v4_rcv".to_owned())]);
        assert!(symbols.take_named().is_empty());
        let mut replayed = KernelSymbols::resolved(named);
        assert_eq!(
            replayed.function(0xffffffff81a0049c).as_deref(),
            Some("tcp_v4_rcv")
        );
        assert_eq!(replayed.function(0xffffffff8190001c), None);
    }

    #[test]
    fn of_two_names_at_one_address_the_first_is_kept() {
        let mut symbols = KernelSymbols::from_text(
            "ffffffff81a00000 T tcp_v4_do_rcv\nffffffff81900000 T ip_rcv\nffffffff81a00000 t alias\n",
        );
        assert_eq!(
            symbols.function(0xffffffff81a00010).as_deref(),
            Some("tcp_v4_do_rcv")
        );
        assert_eq!(
            symbols.function(0xffffffff81900010).as_deref(),
            Some("ip_rcv")
        );
    }

    #[test]
    fn hidden_addresses_match_nothing() {
        let mut symbols = KernelSymbols::from_text("0000000000000000 T tcp_v4_rcv\n");
        assert_eq!(symbols.function(0xffffffff81a0049c), None);
    }
}
