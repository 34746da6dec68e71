//! The probes ftptrace attaches: which kernel hook, and which program in the
//! eBPF object serves it. Program names equal the tracepoint names.

use ftptrace_common::ProbeId;

/// A classic tracepoint whose record the kernel program copies raw.
#[derive(Clone, Copy, Debug)]
pub struct ClassicProbe {
    pub id: ProbeId,
    pub category: &'static str,
    pub name: &'static str,
}

pub const CLASSIC_PROBES: [ClassicProbe; 6] = [
    ClassicProbe {
        id: ProbeId::InetSockSetState,
        category: "sock",
        name: "inet_sock_set_state",
    },
    ClassicProbe {
        id: ProbeId::TcpRetransmitSkb,
        category: "tcp",
        name: "tcp_retransmit_skb",
    },
    ClassicProbe {
        id: ProbeId::TcpRetransmitSynack,
        category: "tcp",
        name: "tcp_retransmit_synack",
    },
    ClassicProbe {
        id: ProbeId::TcpSendReset,
        category: "tcp",
        name: "tcp_send_reset",
    },
    ClassicProbe {
        id: ProbeId::TcpReceiveReset,
        category: "tcp",
        name: "tcp_receive_reset",
    },
    ClassicProbe {
        id: ProbeId::TcpDestroySock,
        category: "tcp",
        name: "tcp_destroy_sock",
    },
];

/// `sock:inet_sk_error_report`, attached as a raw tracepoint (its classic
/// record has no socket pointer, so no network namespace). Added in 5.13.
pub const ERROR_REPORT: ClassicProbe = ClassicProbe {
    id: ProbeId::InetSkErrorReport,
    category: "sock",
    name: "inet_sk_error_report",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_index_their_config_slots() {
        for (index, probe) in CLASSIC_PROBES.iter().enumerate() {
            assert_eq!(probe.id as usize, index, "{}", probe.name);
        }
        assert_eq!(
            CLASSIC_PROBES.len() as u32,
            ftptrace_common::TRACEPOINT_PROBES
        );
    }
}
