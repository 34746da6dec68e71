//! The hook ladder: events with no tracepoint of their own on every kernel
//! (socket errors before 5.13, keepalive and zero-window probes always) try
//! hooks in order, cheapest precise one first, and fall back:
//! raw tracepoint → fentry → kprobe → a fallback built on tracepoints.
//! `sock:inet_sock_set_state`, which every socket on the host fires, has a
//! short one of its own: BTF tracepoint → raw tracepoint.
//! What each rung needs and which program serves it lives here; attaching
//! is the loader's job.

use std::fmt;

/// One kind of hook, as the start line and `ftptrace check` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// A BTF tracepoint (`tp_btf`, 5.5+): a raw tracepoint whose arguments
    /// the verifier types, so that a program may load from them directly.
    BtfTracepoint,
    RawTracepoint,
    Fentry,
    Kprobe,
    /// Built on other tracepoints: the socket timers for probes, `sk_err`
    /// at the CLOSE transition for socket errors.
    Fallback,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Tier::BtfTracepoint,
        Tier::RawTracepoint,
        Tier::Fentry,
        Tier::Kprobe,
        Tier::Fallback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tier::BtfTracepoint => "tp_btf",
            Tier::RawTracepoint => "raw_tracepoint",
            Tier::Fentry => "fentry",
            Tier::Kprobe => "kprobe",
            Tier::Fallback => "fallback",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names a tier for tests: `FTPTRACE_FORCE_HOOK=kprobe` makes every ladder
/// use that tier only (a probe whose ladder has no such tier keeps its own
/// order), so a test proves the tier rather than whichever attached first.
pub const FORCE_HOOK_ENV: &str = "FTPTRACE_FORCE_HOOK";

/// The tier forced by [`FORCE_HOOK_ENV`], if any.
pub fn forced_tier() -> anyhow::Result<Option<Tier>> {
    match std::env::var(FORCE_HOOK_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Tier::ALL
            .into_iter()
            .find(|t| t.name() == value)
            .map(Some)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{FORCE_HOOK_ENV}={value}: not a hook tier (tp_btf, raw_tracepoint, fentry, \
                     kprobe, fallback)"
                )
            }),
        Err(e) => anyhow::bail!("{FORCE_HOOK_ENV}: {e}"),
    }
}

/// One rung: a tier and what it attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rung {
    pub tier: Tier,
    /// The hook as reported: the tier's name, or for a fallback the kind
    /// of hook it is built on (`timer`, `raw_tracepoint`).
    pub hook: &'static str,
    /// Programs of the eBPF object, attached together.
    pub programs: &'static [&'static str],
    /// The kernel function or tracepoint the programs attach to, as shown.
    pub target: &'static str,
}

/// What a ladder observes: it decides what each rung needs from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observes {
    /// Socket errors: `sk_err` and the protocol, whichever hook reports them.
    SocketErrors,
    /// Keepalive and window probes: `icsk_probes_out`, and for the function
    /// hooks the `mib` values that tell the two apart.
    ProbesSent,
}

/// Events served by one set of programs, and the rungs to try for them.
#[derive(Clone, Copy, Debug)]
pub struct Ladder {
    pub observes: Observes,
    /// Event kinds, as the start line names the probes.
    pub serves: &'static [&'static str],
    pub rungs: &'static [Rung],
}

impl Ladder {
    /// The rungs to try, in order: only the forced tier when this ladder has it.
    pub fn rungs_to_try(&self, forced: Option<Tier>) -> Vec<Rung> {
        rungs_to_try(self.rungs, forced)
    }
}

/// `rungs` in order, or only the forced tier's when there is one of it.
pub fn rungs_to_try(rungs: &[Rung], forced: Option<Tier>) -> Vec<Rung> {
    match forced {
        Some(tier) if rungs.iter().any(|r| r.tier == tier) => {
            rungs.iter().copied().filter(|r| r.tier == tier).collect()
        }
        _ => rungs.to_vec(),
    }
}

/// `sock:inet_sock_set_state`'s programs: each rung a first program and
/// its copy for the events the kernel skips the first for (see
/// `inet_sock_set_state_nested` in ftptrace-ebpf), attached in that order.
/// The BTF tracepoint's filter reads the socket with plain loads, not a
/// helper call: every socket's state changes pay for that filter, FTP or
/// not. Its own list, not a [`Ladder`]: the probe is a tracepoint probe
/// (`probes::PROBES`), only its program type has a choice.
pub const SET_STATE_RUNGS: [Rung; 2] = [
    Rung {
        tier: Tier::BtfTracepoint,
        hook: "tp_btf",
        programs: &["inet_sock_set_state_btf", "inet_sock_set_state_btf_nested"],
        target: "inet_sock_set_state",
    },
    Rung {
        tier: Tier::RawTracepoint,
        hook: "raw_tracepoint",
        programs: &["inet_sock_set_state", "inet_sock_set_state_nested"],
        target: "inet_sock_set_state",
    },
];

/// `sock_def_error_report` is the callback every TCP socket's error report
/// runs through; `inet_sk_error_report` is the tracepoint 5.13 added after it.
pub const SOCKET_ERROR: Ladder = Ladder {
    observes: Observes::SocketErrors,
    serves: &["socket_error"],
    rungs: &[
        Rung {
            tier: Tier::RawTracepoint,
            hook: "raw_tracepoint",
            programs: &["inet_sk_error_report", "inet_sk_error_report_nested"],
            target: "sock:inet_sk_error_report",
        },
        Rung {
            tier: Tier::Fentry,
            hook: "fentry",
            programs: &["fentry_error_report"],
            target: "sock_def_error_report",
        },
        Rung {
            tier: Tier::Kprobe,
            hook: "kprobe",
            programs: &["kprobe_error_report"],
            target: "sock_def_error_report",
        },
        Rung {
            tier: Tier::Fallback,
            hook: "raw_tracepoint",
            programs: &[],
            target: "sock:inet_sock_set_state (sk_err at CLOSE)",
        },
    ],
};

/// `tcp_xmit_probe_skb` sends every keepalive and zero-window probe and
/// counts it (TCPKeepAlive, TCPWinProbe); the timers are the fallback.
pub const PROBES_SENT: Ladder = Ladder {
    observes: Observes::ProbesSent,
    serves: &["keepalive_probe", "zero_window_probe"],
    rungs: &[
        Rung {
            tier: Tier::Fentry,
            hook: "fentry",
            programs: &["fentry_xmit_probe"],
            target: "tcp_xmit_probe_skb",
        },
        Rung {
            tier: Tier::Kprobe,
            hook: "kprobe",
            programs: &["kprobe_xmit_probe"],
            target: "tcp_xmit_probe_skb",
        },
        Rung {
            tier: Tier::Fallback,
            hook: "timer",
            programs: &["timer_expire_entry", "timer_expire_exit"],
            target: "timer:timer_expire_entry/exit (socket timers)",
        },
    ],
};

pub const LADDERS: [Ladder; 2] = [SOCKET_ERROR, PROBES_SENT];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::probes;

    #[test]
    fn tracepoint_rungs_attach_a_program_and_its_nested_copy() {
        let ladders = LADDERS.iter().flat_map(|l| l.rungs.iter());
        for rung in SET_STATE_RUNGS.iter().chain(ladders) {
            if matches!(rung.tier, Tier::BtfTracepoint | Tier::RawTracepoint) {
                let [first, copy] = rung.programs else {
                    panic!("{rung:?}: a program and its nested copy")
                };
                assert_eq!(probes::nested_copy(first), Some(*copy));
            }
        }
    }

    #[test]
    fn forcing_a_tier_keeps_only_that_rung() {
        let tiers = |ladder: &Ladder, forced| {
            ladder
                .rungs_to_try(forced)
                .iter()
                .map(|r| r.tier)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            tiers(&SOCKET_ERROR, None),
            [
                Tier::RawTracepoint,
                Tier::Fentry,
                Tier::Kprobe,
                Tier::Fallback
            ]
        );
        assert_eq!(tiers(&SOCKET_ERROR, Some(Tier::Kprobe)), [Tier::Kprobe]);
        assert_eq!(tiers(&PROBES_SENT, Some(Tier::Fallback)), [Tier::Fallback]);
        // No raw tracepoint sees probes: forcing one leaves the ladder whole.
        assert_eq!(
            tiers(&PROBES_SENT, Some(Tier::RawTracepoint)),
            [Tier::Fentry, Tier::Kprobe, Tier::Fallback]
        );
    }

    #[test]
    fn the_state_change_falls_back_to_its_raw_tracepoint() {
        let tiers = |forced| {
            rungs_to_try(&SET_STATE_RUNGS, forced)
                .iter()
                .map(|r| r.tier)
                .collect::<Vec<_>>()
        };
        assert_eq!(tiers(None), [Tier::BtfTracepoint, Tier::RawTracepoint]);
        assert_eq!(tiers(Some(Tier::RawTracepoint)), [Tier::RawTracepoint]);
        // A tier the state change has no rung of leaves it whole.
        assert_eq!(
            tiers(Some(Tier::Fallback)),
            [Tier::BtfTracepoint, Tier::RawTracepoint]
        );
    }

    #[test]
    fn every_tier_has_a_name_that_parses_back() {
        for tier in Tier::ALL {
            assert_eq!(
                Tier::ALL.iter().find(|t| t.name() == tier.name()),
                Some(&tier)
            );
        }
    }
}
