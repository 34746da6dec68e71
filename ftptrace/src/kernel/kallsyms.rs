//! Kernel code addresses → function names, from /proc/kallsyms. Used for a
//! dropped packet's `location` (the function that freed it), the only hint
//! of why on kernels without drop reasons (before 5.17). Drops of FTP
//! packets are rare and come from few places, so each new address costs
//! one scan of the file and is then remembered.

use std::collections::HashMap;

pub const PATH: &str = "/proc/kallsyms";

/// Addresses remembered at most; past it, lookups still work, uncached.
const CACHE_LIMIT: usize = 4096;

pub struct KernelSymbols {
    /// Where the symbol table is read from (`/proc/kallsyms`), or a fixed
    /// text for tests.
    source: Source,
    cache: HashMap<u64, Option<String>>,
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
            .map(|(addr, name)| (addr, Some(name)))
            .collect();
        symbols
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            cache: HashMap::new(),
            named: Vec::new(),
        }
    }

    /// The addresses first named since the last call, with their names.
    pub fn take_named(&mut self) -> Vec<(u64, String)> {
        std::mem::take(&mut self.named)
    }

    /// The function containing `addr`, or `None` when unknown (addresses
    /// hidden by kernel.kptr_restrict read as 0 and match nothing).
    pub fn function(&mut self, addr: u64) -> Option<String> {
        if addr == 0 {
            return None;
        }
        if let Some(known) = self.cache.get(&addr) {
            return known.clone();
        }
        let found = match &self.source {
            Source::File(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|text| containing(&text, addr)),
            Source::Text(text) => containing(text, addr),
            Source::Resolved => None,
        };
        if let Some(name) = &found
            && self.named.len() < CACHE_LIMIT
        {
            self.named.push((addr, name.clone()));
        }
        if self.cache.len() < CACHE_LIMIT {
            self.cache.insert(addr, found.clone());
        }
        found
    }
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

/// The text symbol with the highest address at or below `addr` (kallsyms is
/// not sorted across modules, so every line is looked at).
fn containing(kallsyms: &str, addr: u64) -> Option<String> {
    symbols(kallsyms)
        .filter(|&(start, kind, _)| matches!(kind, "t" | "T") && start != 0 && start <= addr)
        // The first of several at one address (an alias comes later).
        .fold(
            None,
            |best: Option<(u64, &str)>, (start, _, name)| match best {
                Some((b, _)) if start <= b => best,
                _ => Some((start, name)),
            },
        )
        .map(|(_, name)| name.to_owned())
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
    fn hidden_addresses_match_nothing() {
        let mut symbols = KernelSymbols::from_text("0000000000000000 T tcp_v4_rcv\n");
        assert_eq!(symbols.function(0xffffffff81a0049c), None);
    }
}
