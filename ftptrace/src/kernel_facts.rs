//! What ftptrace learns from the running kernel before loading anything:
//! record layouts from tracefs `format` files, struct offsets and enum values
//! from BTF. Nothing here is compiled in for one kernel.

use std::path::Path;

use ftptrace_common::{KernelOffsets, NO_FIELD, TracepointConfig};

use crate::{
    btf::Btf,
    layout::{KernelNames, RecordLayout},
    probes::{CLASSIC_PROBES, ClassicProbe},
    tracepoint_format::TracepointFormat,
};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// One classic tracepoint on this kernel: its layout, or why it cannot be used.
pub struct ProbeLayout {
    pub probe: ClassicProbe,
    pub layout: Result<(RecordLayout, TracepointConfig), String>,
    pub format: Option<TracepointFormat>,
}

pub struct KernelFacts {
    pub release: String,
    pub probes: Vec<ProbeLayout>,
    pub names: KernelNames,
    /// `None` with the reason when BTF is unavailable: network namespaces and
    /// socket errors are then not reported.
    pub offsets: Result<KernelOffsets, String>,
}

impl KernelFacts {
    pub fn read(tracefs: &Path) -> Self {
        let btf = std::fs::read(BTF_PATH)
            .map_err(|e| format!("no kernel BTF at {BTF_PATH} ({e})"))
            .and_then(|data| Btf::parse(&data).map_err(|e| format!("cannot read {BTF_PATH}: {e}")));
        let probes: Vec<ProbeLayout> = CLASSIC_PROBES
            .iter()
            .map(|&probe| {
                let path = tracefs
                    .join("events")
                    .join(probe.category)
                    .join(probe.name)
                    .join("format");
                let format = std::fs::read_to_string(&path)
                    .map_err(|e| {
                        format!(
                            "tracepoint {}:{} not found ({e})",
                            probe.category, probe.name
                        )
                    })
                    .and_then(|text| {
                        TracepointFormat::parse(&text)
                            .map_err(|e| format!("{}: {e}", path.display()))
                    });
                let layout = format.as_ref().map_err(Clone::clone).and_then(|format| {
                    let layout =
                        RecordLayout::from_format(probe.id, format).map_err(|e| e.to_string())?;
                    let config = layout.kernel_config().map_err(|e| e.to_string())?;
                    Ok((layout, config))
                });
                ProbeLayout {
                    probe,
                    layout,
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
        let resolve = |name: &str| btf.as_ref().ok().and_then(|btf| btf.enum_value(name));
        let names = KernelNames::from_formats(
            format_of("inet_sock_set_state"),
            format_of("tcp_send_reset"),
            &resolve,
        );
        Self {
            release: kernel_release(),
            names,
            offsets: btf.and_then(|btf| kernel_offsets(&btf)),
            probes,
        }
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Struct member offsets the kernel programs use to follow a socket to its
/// network namespace and to read a socket's addresses and error. The
/// namespace offsets are required; the rest only serve the error report.
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
    Ok(KernelOffsets {
        sock_net: required("sock", &["__sk_common", "skc_net", "net"])?,
        net_inum: required("net", &["ns", "inum"])?,
        skb_dev: optional("sk_buff", &["dev"]),
        netdev_net: optional("net_device", &["nd_net", "net"]),
        sock_family: optional("sock", &["__sk_common", "skc_family"]),
        sock_protocol: optional("sock", &["sk_protocol"]),
        sock_err: optional("sock", &["sk_err"]),
        inet_sport: optional("inet_sock", &["inet_sport"]),
        sock_dport: optional("sock", &["__sk_common", "skc_dport"]),
        sock_saddr: optional("sock", &["__sk_common", "skc_rcv_saddr"]),
        sock_daddr: optional("sock", &["__sk_common", "skc_daddr"]),
        sock_v6_saddr: optional("sock", &["__sk_common", "skc_v6_rcv_saddr"]),
        sock_v6_daddr: optional("sock", &["__sk_common", "skc_v6_daddr"]),
        _pad: 0,
    })
}

/// Whether the offsets suffice for the socket error probe, else why not.
pub fn error_report_usable(offsets: &KernelOffsets) -> Result<(), String> {
    let needed = [
        ("sock.sk_protocol", offsets.sock_protocol),
        ("sock.sk_err", offsets.sock_err),
        ("sock.skc_family", offsets.sock_family),
        ("inet_sock.inet_sport", offsets.inet_sport),
        ("sock.skc_dport", offsets.sock_dport),
        ("sock.skc_rcv_saddr", offsets.sock_saddr),
        ("sock.skc_daddr", offsets.sock_daddr),
    ];
    match needed.iter().find(|(_, offset)| *offset == NO_FIELD) {
        Some((name, _)) => Err(format!("kernel BTF lacks {name}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a host with BTF, every offset resolves (skipped without BTF, as in
    /// a container; CI runs on a kernel with it).
    #[test]
    fn host_btf_gives_every_offset() {
        let Ok(data) = std::fs::read(BTF_PATH) else {
            eprintln!("skipping: no {BTF_PATH}");
            return;
        };
        let offsets = kernel_offsets(&Btf::parse(&data).unwrap()).unwrap();
        assert_eq!(error_report_usable(&offsets), Ok(()));
        assert_ne!(offsets.skb_dev, NO_FIELD);
        assert_ne!(offsets.netdev_net, NO_FIELD);
        assert_ne!(offsets.sock_v6_daddr, NO_FIELD);
        // __sk_common is the first member of struct sock, and skc_daddr its first.
        assert_eq!(offsets.sock_daddr, 0);
    }
}
