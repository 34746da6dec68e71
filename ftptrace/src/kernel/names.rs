//! Kernel enum names (TCP states, reset reasons), read from the running
//! kernel's tracepoint print formats, with BTF resolving the constants some
//! kernels leave unresolved there.

use crate::{
    event::Name,
    kernel::tracepoint_format::{SymbolTable, TracepointFormat},
};

/// Kernel enum names, read from the running kernel.
#[derive(Clone, Debug, Default)]
pub struct KernelNames {
    /// TCP states (`TCP_ESTABLISHED`, ...).
    pub tcp_states: SymbolTable,
    /// `enum sk_rst_reason`, where the kernel reports reset reasons (6.10+).
    pub reset_reasons: Option<SymbolTable>,
    /// `enum skb_drop_reason`, where the kernel reports drop reasons (5.17+).
    pub drop_reasons: Option<SymbolTable>,
    /// `tcp_states` without their `TCP_`, as events name them.
    short_states: SymbolTable,
}

impl KernelNames {
    /// Linux's TCP state numbers (the same on every kernel since 2.x) and
    /// no reason tables: for tools that decode without a kernel at hand.
    pub fn linux_defaults() -> Self {
        Self::new(linux_tcp_states(), None, None)
    }

    pub fn new(
        tcp_states: SymbolTable,
        reset_reasons: Option<SymbolTable>,
        drop_reasons: Option<SymbolTable>,
    ) -> Self {
        Self {
            short_states: without_prefix(&tcp_states, "TCP_"),
            tcp_states,
            reset_reasons,
            drop_reasons,
        }
    }

    /// TCP state names come from `inet_sock_set_state`'s print format, whose
    /// values the kernel resolves to numbers; reset reasons from
    /// `tcp_send_reset`'s. `resolve` maps enum constants left as identifiers.
    pub fn from_formats(
        set_state: Option<&TracepointFormat>,
        send_reset: Option<&TracepointFormat>,
        resolve: &dyn Fn(&str) -> Option<i64>,
    ) -> Self {
        Self::from_all_formats(set_state, send_reset, None, resolve)
    }

    /// As [`Self::from_formats`], with drop reasons from `kfree_skb`'s.
    pub fn from_all_formats(
        set_state: Option<&TracepointFormat>,
        send_reset: Option<&TracepointFormat>,
        kfree_skb: Option<&TracepointFormat>,
        resolve: &dyn Fn(&str) -> Option<i64>,
    ) -> Self {
        let tcp_states = set_state
            .and_then(|f| f.symbols("newstate", resolve))
            .unwrap_or_else(linux_tcp_states);
        let reset_reasons = send_reset.and_then(|f| f.symbols("reason", resolve));
        let drop_reasons = kfree_skb.and_then(|f| f.symbols("reason", resolve));
        Self::new(tcp_states, reset_reasons, drop_reasons)
    }

    /// `TCP_SYN_SENT` → `SYN_SENT`; unknown numbers print as the number.
    pub fn state_name(&self, value: i64) -> Name {
        match self.short_states.name(value) {
            Some(name) => name.clone(),
            None => Name::from(value.to_string()),
        }
    }

    pub fn reset_reason(&self, value: i64) -> Option<Name> {
        name_or_number(self.reset_reasons.as_ref()?, value)
    }

    /// `NETFILTER_DROP` for 12 on 6.18 (the numbers change between kernels).
    pub fn drop_reason(&self, value: i64) -> Option<Name> {
        name_or_number(self.drop_reasons.as_ref()?, value)
    }
}

/// The table's names without `prefix`.
fn without_prefix(table: &SymbolTable, prefix: &str) -> SymbolTable {
    let mut short = SymbolTable::default();
    for (value, name) in table.iter() {
        short.insert(value, name.strip_prefix(prefix).unwrap_or(name));
    }
    short
}

fn name_or_number(table: &SymbolTable, value: i64) -> Option<Name> {
    Some(match table.name(value) {
        Some(name) => name.clone(),
        None => Name::from(value.to_string()),
    })
}

/// The TCP state numbers of include/net/tcp_states.h, unchanged since Linux
/// 2.x; used only if a kernel's print format gives no table.
fn linux_tcp_states() -> SymbolTable {
    let mut table = SymbolTable::default();
    for (value, name) in [
        (1, "TCP_ESTABLISHED"),
        (2, "TCP_SYN_SENT"),
        (3, "TCP_SYN_RECV"),
        (4, "TCP_FIN_WAIT1"),
        (5, "TCP_FIN_WAIT2"),
        (6, "TCP_TIME_WAIT"),
        (7, "TCP_CLOSE"),
        (8, "TCP_CLOSE_WAIT"),
        (9, "TCP_LAST_ACK"),
        (10, "TCP_LISTEN"),
        (11, "TCP_CLOSING"),
        (12, "TCP_NEW_SYN_RECV"),
    ] {
        table.insert(value, name);
    }
    table
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernel::{
        probes::PROBES,
        tracepoint_format::tests::{kernels, testdata_format},
    };

    /// Every recorded kernel gives TCP state names, and reset reason names
    /// exactly where its `tcp_send_reset` has a `reason` argument.
    #[test]
    fn every_recorded_kernel_names_states_and_reasons() {
        let kernels = kernels();
        assert!(
            kernels.len() >= 2,
            "expected formats from several kernels, found {kernels:?}"
        );
        for kernel in &kernels {
            let set_state = testdata_format(kernel, "sock", "inet_sock_set_state");
            let send_reset = testdata_format(kernel, "tcp", "tcp_send_reset");
            assert!(
                set_state.is_some(),
                "{kernel}: every supported kernel has inet_sock_set_state"
            );
            // The kernels leave no TCP state unresolved in this print format.
            let names =
                KernelNames::from_formats(set_state.as_ref(), send_reset.as_ref(), &|_| None);
            assert_eq!(names.state_name(1), "ESTABLISHED", "{kernel}");
            assert_eq!(names.state_name(12), "NEW_SYN_RECV", "{kernel}");
            let has_reason = send_reset
                .as_ref()
                .is_some_and(|f| f.field("reason").is_some());
            assert_eq!(
                names.reset_reason(1).as_deref(),
                has_reason.then_some("NO_SOCKET"),
                "{kernel}"
            );
            if let Some(format) = testdata_format(kernel, "tcp", "tcp_send_reset") {
                let program = PROBES[3].program_for(&format);
                assert_eq!(program == "tcp_send_reset_reason", has_reason, "{kernel}");
            }
        }
    }

    #[test]
    fn drop_reasons_differ_between_kernels_and_come_from_each() {
        let names = |kernel| {
            KernelNames::from_all_formats(
                None,
                None,
                testdata_format(kernel, "skb", "kfree_skb").as_ref(),
                &|_| None,
            )
        };
        let on_6_18 = names("6.18");
        assert_eq!(on_6_18.drop_reason(12).as_deref(), Some("NETFILTER_DROP"));
        assert_eq!(
            on_6_18.drop_reason(40).as_deref(),
            Some("TCP_LISTEN_OVERFLOW")
        );
        assert_eq!(on_6_18.drop_reason(64).as_deref(), Some("QDISC_DROP"));
        let on_6_1 = names("6.1");
        assert!(
            on_6_1
                .drop_reasons
                .as_ref()
                .is_some_and(|t| t.value("NETFILTER_DROP").is_some())
        );
        assert_ne!(
            on_6_1
                .drop_reasons
                .as_ref()
                .unwrap()
                .value("NETFILTER_DROP"),
            Some(12)
        );
        // 5.10 has no reason at all.
        assert_eq!(names("5.10").drop_reason(12), None);
    }

    #[test]
    fn names_come_from_the_print_formats() {
        let set_state = testdata_format("6.18", "sock", "inet_sock_set_state");
        let send_reset = testdata_format("6.18", "tcp", "tcp_send_reset");
        let names = KernelNames::from_formats(set_state.as_ref(), send_reset.as_ref(), &|_| None);
        assert_eq!(names.state_name(2), "SYN_SENT");
        assert_eq!(names.state_name(99), "99");
        assert_eq!(names.reset_reason(1).as_deref(), Some("NO_SOCKET"));
        let without = KernelNames::from_formats(None, None, &|_| None);
        assert_eq!(without.state_name(7), "CLOSE");
        assert_eq!(without.reset_reason(1), None);
    }
}
