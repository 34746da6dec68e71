//! What ftptrace learns from the running kernel before loading anything:
//! which tracepoints exist and with which arguments (tracefs `format` files),
//! enum names (their print formats), struct offsets (BTF). Nothing here is
//! compiled in for one kernel.

use std::path::Path;

use ftptrace_common::{KernelOffsets, NO_FIELD, ProbeSettings, TimerHooks};

use super::{
    btf::Btf,
    kallsyms,
    names::KernelNames,
    privileges,
    probes::{PROBES, Probe},
    tracepoint_format::TracepointFormat,
};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// One probe on this kernel: the program that serves it, or why none can.
pub struct ProbePlan {
    pub probe: Probe,
    pub program: Result<&'static str, String>,
    pub format: Option<TracepointFormat>,
}

pub struct KernelFacts {
    pub release: String,
    pub probes: Vec<ProbePlan>,
    pub names: KernelNames,
    pub offsets: KernelOffsets,
    /// The socket timer fallback for keepalive and zero-window probes, or
    /// why it cannot work here.
    pub timer_hooks: Result<TimerHooks, String>,
    /// Whether `sock:inet_sk_error_report` exists (5.13+), else why not.
    pub error_report_tracepoint: Result<(), String>,
    /// The `mib` values of keepalive and window probes, else why unknown.
    pub probe_mibs: Result<(u32, u32), String>,
    /// Whether kprobes can be created at all, else why not.
    pub kprobes: Result<(), String>,
}

impl KernelFacts {
    pub fn read(tracefs: &Path) -> anyhow::Result<Self> {
        let data = std::fs::read(BTF_PATH).map_err(|e| {
            anyhow::anyhow!(
                "kernel BTF is missing ({BTF_PATH}: {e}); ftptrace needs a kernel built with \
                 CONFIG_DEBUG_INFO_BTF to find its way through kernel structs"
            )
        })?;
        let btf = Btf::parse(&data).map_err(|e| anyhow::anyhow!("cannot read {BTF_PATH}: {e}"))?;
        let offsets = kernel_offsets(&btf).map_err(|e| anyhow::anyhow!("{e}"))?;
        let probes: Vec<ProbePlan> = PROBES
            .iter()
            .map(|&probe| {
                let path = tracefs
                    .join("events")
                    .join(probe.category)
                    .join(probe.name)
                    .join("format");
                let format = std::fs::read_to_string(&path)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => {
                            format!("this kernel has no tracepoint {}", probe.full_name())
                        }
                        _ => format!(
                            "cannot read {}: {e}{}",
                            path.display(),
                            privileges::tracefs_hint()
                        ),
                    })
                    .and_then(|text| {
                        TracepointFormat::parse(&text)
                            .map_err(|e| format!("{}: {e}", path.display()))
                    })
                    .and_then(|format| match format.name == probe.name {
                        true => Ok(format),
                        false => Err(format!("{} describes `{}`", path.display(), format.name)),
                    });
                let program = match &format {
                    Err(reason) => Err(reason.clone()),
                    Ok(format) => Ok(probe.program_for(format)),
                };
                ProbePlan {
                    probe,
                    program,
                    format: format.ok(),
                }
            })
            .collect();
        let format_of = |name: &str| {
            probes
                .iter()
                .find(|p| p.probe.name == name)
                .and_then(|p| p.format.as_ref())
        };
        let resolve = |name: &str| btf.enum_value(name);
        let names = KernelNames::from_all_formats(
            format_of("inet_sock_set_state"),
            format_of("tcp_send_reset"),
            format_of("kfree_skb"),
            &resolve,
        );
        let kallsyms = std::fs::read_to_string(kallsyms::PATH).unwrap_or_default();
        let error_report_tracepoint = match tracefs
            .join("events/sock/inet_sk_error_report/format")
            .exists()
        {
            true => Ok(()),
            false => Err("this kernel has no tracepoint sock:inet_sk_error_report (5.13+)".into()),
        };
        Ok(Self {
            release: kernel_release(),
            names,
            offsets,
            probes,
            timer_hooks: timer_hooks(&btf, &kallsyms).map_err(|why| {
                if privileges::has(privileges::CAP_SYSLOG) {
                    why
                } else {
                    format!("{why}: this process lacks CAP_SYSLOG")
                }
            }),
            error_report_tracepoint,
            probe_mibs: probe_mibs(&btf),
            kprobes: kprobes_available(tracefs),
        })
    }

    /// What the programs of the ladder rungs read, for the `SETTINGS` map.
    pub fn probe_settings(&self, error_at_close: bool) -> ProbeSettings {
        let (keepalive_mib, window_probe_mib) =
            self.probe_mibs.clone().unwrap_or((u32::MAX, u32::MAX));
        ProbeSettings {
            keepalive_mib,
            window_probe_mib,
            error_at_close: u8::from(error_at_close),
            _pad: [0; 7],
            expect_ttl_ns: ftptrace_common::EXPECTATION_TTL_NS,
        }
    }
}

/// `LINUX_MIB_TCPKEEPALIVE` and `LINUX_MIB_TCPWINPROBE`: enum values that
/// shift whenever a kernel adds a counter before them.
fn probe_mibs(btf: &Btf) -> Result<(u32, u32), String> {
    let value = |name: &str| {
        btf.enum_value(name)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("kernel BTF has no enum value {name}"))
    };
    Ok((
        value("LINUX_MIB_TCPKEEPALIVE")?,
        value("LINUX_MIB_TCPWINPROBE")?,
    ))
}

/// Kprobes come through the `kprobe` perf PMU (4.17+) or tracefs
/// `kprobe_events`; a kernel built without CONFIG_KPROBES has neither.
fn kprobes_available(tracefs: &Path) -> Result<(), String> {
    if Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        || tracefs.join("kprobe_events").exists()
    {
        Ok(())
    } else {
        Err(
            "this kernel has no kprobes (CONFIG_KPROBES off: no kprobe PMU, no kprobe_events)"
                .into(),
        )
    }
}

/// This host's name, as the kernel holds it (`uname -n`).
pub fn host_name() -> anyhow::Result<String> {
    read_trimmed("/proc/sys/kernel/hostname")
}

/// 128 random bits from the kernel, in hex: a version 4 UUID's digits.
pub fn random_id() -> anyhow::Result<String> {
    let id: String = read_trimmed("/proc/sys/kernel/random/uuid")?
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    anyhow::ensure!(id.len() == 32, "/proc/sys/kernel/random/uuid gave no UUID");
    Ok(id)
}

fn read_trimmed(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Struct member offsets the kernel programs read: a socket's ports,
/// addresses, state and network namespace (required), its error and protocol
/// and a packet's headers (optional: only some probes need them).
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, String> {
    let at = |ty: &str, path: &[&str]| {
        btf.member_offset(ty, path)
            .and_then(|o| u16::try_from(o).ok())
            .filter(|&o| o != NO_FIELD)
    };
    let required = |ty: &str, path: &[&str]| {
        at(ty, path)
            .ok_or_else(|| format!("kernel BTF has no struct {ty} member {}", path.join(".")))
    };
    let optional = |ty: &str, path: &[&str]| at(ty, path).unwrap_or(NO_FIELD);
    let offsets = KernelOffsets {
        sock_net: required("sock", &["__sk_common", "skc_net", "net"])?,
        net_inum: required("net", &["ns", "inum"])?,
        skb_dev: optional("sk_buff", &["dev"]),
        netdev_net: optional("net_device", &["nd_net", "net"]),
        sock_family: required("sock", &["__sk_common", "skc_family"])?,
        sock_protocol: optional("sock", &["sk_protocol"]),
        sock_err: optional("sock", &["sk_err"]),
        sock_state: required("sock", &["__sk_common", "skc_state"])?,
        skb_head: optional("sk_buff", &["head"]),
        skb_network_header: optional("sk_buff", &["network_header"]),
        skb_transport_header: optional("sk_buff", &["transport_header"]),
        skb_tcp_segs: match (at("sk_buff", &["cb"]), at("tcp_skb_cb", &["tcp_gso_segs"])) {
            (Some(cb), Some(segs)) => cb.checked_add(segs).unwrap_or(NO_FIELD),
            _ => NO_FIELD,
        },
        sock_num: required("sock", &["__sk_common", "skc_num"])?,
        inet_sport: required("inet_sock", &["inet_sport"])?,
        sock_dport: required("sock", &["__sk_common", "skc_dport"])?,
        sock_saddr: required("sock", &["__sk_common", "skc_rcv_saddr"])?,
        sock_daddr: required("sock", &["__sk_common", "skc_daddr"])?,
        sock_v6_saddr: optional("sock", &["__sk_common", "skc_v6_rcv_saddr"]),
        sock_v6_daddr: optional("sock", &["__sk_common", "skc_v6_daddr"]),
        skb_iif: optional("sk_buff", &["skb_iif"]),
        icsk_probes_out: optional("inet_connection_sock", &["icsk_probes_out"]),
        sock_flags: optional("sock", &["__sk_common", "skc_flags"]),
        tcp_rcv_nxt: optional("tcp_sock", &["rcv_nxt"]),
        tcp_rcv_wup: optional("tcp_sock", &["rcv_wup"]),
        tcp_rcv_wnd: optional("tcp_sock", &["rcv_wnd"]),
        tcp_snd_una: optional("tcp_sock", &["snd_una"]),
        tcp_write_seq: optional("tcp_sock", &["write_seq"]),
        tcp_max_window: optional("tcp_sock", &["max_window"]),
        tcp_total_retrans: optional("tcp_sock", &["total_retrans"]),
        tcp_dsack_dups: optional("tcp_sock", &["dsack_dups"]),
    };
    // The programs read these four in one go (see `try_sock_event`), as
    // every kernel since 2.6 lays them out.
    let d = offsets.sock_dport;
    let packed = [offsets.sock_num, offsets.sock_family, offsets.sock_state]
        .iter()
        .zip([2, 4, 6])
        .all(|(&at, after)| d.checked_add(after) == Some(at));
    if !packed {
        return Err(format!(
            "kernel BTF lays out struct sock_common's skc_dport ({d}), skc_num ({}), skc_family \
             ({}) and skc_state ({}) apart, which ftptrace does not read",
            offsets.sock_num, offsets.sock_family, offsets.sock_state
        ));
    }
    Ok(offsets)
}

/// Whether the control channel can be read as TCP accepts it: the
/// programs check each arriving segment against the socket's receive
/// state, and read nothing without it.
pub fn tcp_receive_usable(offsets: &KernelOffsets) -> Result<(), String> {
    let fields = [
        ("rcv_nxt", offsets.tcp_rcv_nxt),
        ("rcv_wup", offsets.tcp_rcv_wup),
        ("rcv_wnd", offsets.tcp_rcv_wnd),
        ("snd_una", offsets.tcp_snd_una),
        ("write_seq", offsets.tcp_write_seq),
        ("max_window", offsets.tcp_max_window),
    ];
    match fields.iter().find(|(_, offset)| *offset == NO_FIELD) {
        Some((name, _)) => Err(format!(
            "kernel BTF has no struct tcp_sock member {name}: the control channel would be \
             read without TCP's checks"
        )),
        None => Ok(()),
    }
}

/// Where socket timers live and which functions they run, for the timer
/// fallback. Symbol addresses come from /proc/kallsyms (root sees them
/// unless kernel.kptr_restrict is 2).
pub fn timer_hooks(btf: &Btf, kallsyms: &str) -> Result<TimerHooks, String> {
    let symbol = |name: &str| kallsyms::address_of(kallsyms, name);
    let keepalive_fn =
        symbol("tcp_keepalive_timer").ok_or("/proc/kallsyms has no tcp_keepalive_timer")?;
    let write_timer_fn =
        symbol("tcp_write_timer").ok_or("/proc/kallsyms has no tcp_write_timer")?;
    if keepalive_fn == 0 || write_timer_fn == 0 {
        return Err("the kernel hides symbol addresses (kernel.kptr_restrict)".into());
    }
    let offset = |ty: &str, path: &[&str]| {
        btf.member_offset(ty, path)
            .and_then(|o| u16::try_from(o).ok())
            .filter(|&o| o != NO_FIELD)
            .ok_or_else(|| format!("kernel BTF has no struct {ty} member {}", path.join(".")))
    };
    Ok(TimerHooks {
        keepalive_fn,
        write_timer_fn,
        timer_function: offset("timer_list", &["function"])?,
        // 6.1 and 7.2 keep the keepalive timer in inet_connection_sock;
        // in between it was sk_timer itself (icsk_keepalive_timer a macro).
        sock_timer: offset("inet_connection_sock", &["icsk_keepalive_timer"])
            .or_else(|_| offset("sock", &["sk_timer"]))?,
        // 7.2 moved it into struct sock, sharing sk_timer's place.
        icsk_retransmit_timer: offset("inet_connection_sock", &["icsk_retransmit_timer"])
            .or_else(|_| offset("sock", &["tcp_retransmit_timer"]))?,
        _pad: 0,
    })
}

/// Whether the offsets suffice for the socket error probe, else why not.
pub fn error_report_usable(offsets: &KernelOffsets) -> Result<(), String> {
    needs(&[
        ("sock.sk_protocol", offsets.sock_protocol),
        ("sock.sk_err", offsets.sock_err),
    ])
}

/// Whether the offsets suffice for the socket error fallback at CLOSE.
pub fn error_at_close_usable(offsets: &KernelOffsets) -> Result<(), String> {
    error_report_usable(offsets)?;
    needs(&[("sock.sk_flags", offsets.sock_flags)])
}

/// Whether the offsets suffice to count unanswered probes.
pub fn probes_out_usable(offsets: &KernelOffsets) -> Result<(), String> {
    needs(&[(
        "inet_connection_sock.icsk_probes_out",
        offsets.icsk_probes_out,
    )])
}

fn needs(fields: &[(&str, u16)]) -> Result<(), String> {
    match fields.iter().find(|(_, offset)| *offset == NO_FIELD) {
        Some((name, _)) => Err(format!("kernel BTF lacks {name}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_symbol_addresses_disable_the_timer_fallback() {
        let hidden = "0000000000000000 t tcp_keepalive_timer\n0000000000000000 t tcp_write_timer\n";
        let btf = Btf::parse(&crate::kernel::btf::tests::Builder::new().build()).unwrap();
        assert_eq!(
            timer_hooks(&btf, hidden),
            Err("the kernel hides symbol addresses (kernel.kptr_restrict)".into())
        );
        assert_eq!(
            timer_hooks(&btf, ""),
            Err("/proc/kallsyms has no tcp_keepalive_timer".into())
        );
        // `.cold` parts are other symbols.
        let cold = "ffffffff81243c71 t tcp_keepalive_timer.cold\n";
        assert!(timer_hooks(&btf, cold).is_err());
    }

    /// On a host with BTF, every offset resolves (skipped without BTF, as in
    /// a container; CI runs on a kernel with it).
    #[test]
    fn host_btf_gives_every_offset() {
        let Ok(data) = std::fs::read(BTF_PATH) else {
            eprintln!("skipping: no {BTF_PATH}");
            return;
        };
        let offsets = kernel_offsets(&Btf::parse(&data).unwrap()).unwrap();
        assert_eq!(error_at_close_usable(&offsets), Ok(()));
        assert_eq!(probes_out_usable(&offsets), Ok(()));
        let (keepalive, window) = probe_mibs(&Btf::parse(&data).unwrap()).unwrap();
        assert_ne!(keepalive, window);
        let kallsyms = std::fs::read_to_string(kallsyms::PATH).unwrap_or_default();
        if kallsyms
            .lines()
            .any(|l| l.ends_with(" tcp_keepalive_timer") && !l.starts_with("0000000000000000"))
        {
            let hooks = timer_hooks(&Btf::parse(&data).unwrap(), &kallsyms).unwrap();
            assert_ne!(hooks.keepalive_fn, hooks.write_timer_fn);
            assert!(offsets.icsk_probes_out > hooks.icsk_retransmit_timer);
        }
        assert_ne!(offsets.skb_dev, NO_FIELD);
        assert_ne!(offsets.skb_transport_header, NO_FIELD);
        assert_ne!(offsets.skb_tcp_segs, NO_FIELD);
        assert_ne!(offsets.netdev_net, NO_FIELD);
        assert_ne!(offsets.sock_v6_daddr, NO_FIELD);
        // __sk_common is the first member of struct sock, and skc_daddr its first.
        assert_eq!(offsets.sock_daddr, 0);
    }
}
