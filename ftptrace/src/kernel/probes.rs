//! The probes that are tracepoints on every kernel ftptrace supports: which
//! tracepoint, and which program of the eBPF object serves it on this kernel.
//! The others climb a hook ladder (`hook_ladder`).

use ftptrace_common::ProbeId;
use serde::{Deserialize, Serialize};

use crate::kernel::tracepoint_format::TracepointFormat;

#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub id: ProbeId,
    pub category: &'static str,
    pub name: &'static str,
    /// The program for this tracepoint's original arguments.
    pub program: &'static str,
    /// A later kernel added an argument: when the `format` file has this
    /// field, the program that also reads it.
    pub with_field: Option<(&'static str, &'static str)>,
}

impl Probe {
    /// The program matching this kernel's tracepoint, by its `format` file.
    pub fn program_for(&self, format: &TracepointFormat) -> &'static str {
        match self.with_field {
            Some((field, program)) if format.field(field).is_some() => program,
            _ => self.program,
        }
    }

    /// `category:name`, as the start line and `ftptrace check` name it.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.category, self.name)
    }
}

const fn probe(id: ProbeId, category: &'static str, name: &'static str) -> Probe {
    Probe {
        id,
        category,
        name,
        program: name,
        with_field: None,
    }
}

pub const PROBES: [Probe; 7] = [
    probe(ProbeId::InetSockSetState, "sock", "inet_sock_set_state"),
    Probe {
        with_field: Some(("err", "tcp_retransmit_skb_err")),
        ..probe(ProbeId::TcpRetransmitSkb, "tcp", "tcp_retransmit_skb")
    },
    probe(ProbeId::TcpRetransmitSynack, "tcp", "tcp_retransmit_synack"),
    Probe {
        with_field: Some(("reason", "tcp_send_reset_reason")),
        ..probe(ProbeId::TcpSendReset, "tcp", "tcp_send_reset")
    },
    probe(ProbeId::TcpReceiveReset, "tcp", "tcp_receive_reset"),
    probe(ProbeId::TcpDestroySock, "tcp", "tcp_destroy_sock"),
    // The drop reason came in 5.17.
    Probe {
        with_field: Some(("reason", "kfree_skb_reason")),
        ..probe(ProbeId::KfreeSkb, "skb", "kfree_skb")
    },
];

/// Each tracepoint program and its nested copy (ftptrace-ebpf `nesting`):
/// the kernel does not run a program nested in itself on one CPU, so the
/// copy, attached after it to the same tracepoint, takes the events that
/// arrive while the first is interrupted mid-event.
pub const NESTED_COPIES: [(&str, &str); 12] = [
    ("inet_sock_set_state", "inet_sock_set_state_nested"),
    ("inet_sock_set_state_btf", "inet_sock_set_state_btf_nested"),
    ("tcp_retransmit_skb", "tcp_retransmit_skb_nested"),
    ("tcp_retransmit_skb_err", "tcp_retransmit_skb_err_nested"),
    ("tcp_retransmit_synack", "tcp_retransmit_synack_nested"),
    ("tcp_send_reset", "tcp_send_reset_nested"),
    ("tcp_send_reset_reason", "tcp_send_reset_reason_nested"),
    ("tcp_receive_reset", "tcp_receive_reset_nested"),
    ("tcp_destroy_sock", "tcp_destroy_sock_nested"),
    ("inet_sk_error_report", "inet_sk_error_report_nested"),
    ("kfree_skb", "kfree_skb_nested"),
    ("kfree_skb_reason", "kfree_skb_reason_nested"),
];

/// `program`'s nested copy.
pub fn nested_copy(program: &str) -> Option<&'static str> {
    NESTED_COPIES
        .iter()
        .find(|(first, _)| *first == program)
        .map(|&(_, copy)| copy)
}

/// Whether `program` is a nested copy. Its own recursion misses lose
/// nothing: the kernel skips it only while it runs, when its first program
/// is free and takes the event. What the first skips, the first's count
/// holds, less what the copies rescued.
pub fn is_nested_copy(program: &str) -> bool {
    NESTED_COPIES.iter().any(|&(_, copy)| copy == program)
}

/// What became of a probe on this kernel: the hook it attached with, or
/// why it is off (the start line and `ftptrace check` list these).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProbeStatus {
    /// `category:event` for a tracepoint probe, the event kind for a probe
    /// with a hook ladder.
    pub name: String,
    /// `tp_btf`, `raw_tracepoint`, `fentry`, `kprobe`, `timer`, `cgroup_skb`,
    /// or `off`.
    pub hook: String,
    /// What the hook is attached to: a tracepoint, a kernel function, a cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub attached: bool,
    /// Why it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The better hooks tried first, each with why it did not work here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fell_back: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tracepoint_format::tests::testdata_format;

    #[test]
    fn the_6_18_variants_read_err_and_reason() {
        let program = |probe: &Probe| {
            probe.program_for(&testdata_format("6.18", probe.category, probe.name).unwrap())
        };
        assert_eq!(program(&PROBES[1]), "tcp_retransmit_skb_err");
        assert_eq!(program(&PROBES[3]), "tcp_send_reset_reason");
        assert_eq!(program(&PROBES[0]), "inet_sock_set_state");
    }

    #[test]
    fn every_tracepoint_program_has_a_nested_copy() {
        for probe in PROBES {
            let variant = probe.with_field.map(|(_, program)| program);
            for program in std::iter::once(probe.program).chain(variant) {
                let copy = nested_copy(program).unwrap_or_else(|| panic!("{program}"));
                assert_eq!(copy, format!("{program}_nested"));
                assert!(is_nested_copy(copy) && !is_nested_copy(program));
            }
        }
        assert!(!is_nested_copy("timer_expire_exit"));
    }

    #[test]
    fn without_the_field_the_original_program_serves() {
        let format = TracepointFormat::parse(
            "name: tcp_send_reset\nformat:\n\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n",
        )
        .unwrap();
        assert_eq!(PROBES[3].program_for(&format), "tcp_send_reset");
    }
}
