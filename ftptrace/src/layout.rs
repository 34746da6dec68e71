//! Record layouts of the traced tracepoints, built from the running kernel's
//! `format` files: what the kernel program needs to filter (port and protocol
//! offsets, where the socket pointer is) and what the decoder needs to read.
//!
//! Layouts differ between kernels: 6.x `tcp_send_reset` carries sockaddr
//! copies and a reason where 5.10 has `sport`/`dport` and split addresses;
//! `family` and `err` come and go. Only the fields a probe cannot do without
//! are required; everything else is optional and decoded when present.

use ftptrace_common::{NO_FIELD, PortField, ProbeId, RECORD_CAPACITY, TracepointConfig};

use crate::tracepoint_format::{Field, SymbolTable, TracepointFormat};

/// A scalar field's place in the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scalar {
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

impl Scalar {
    fn of(field: &Field) -> Self {
        Self {
            offset: field.offset,
            size: field.size,
            signed: field.signed,
        }
    }

    /// Reads the value from `record` (native byte order, as the kernel wrote it).
    pub fn read(self, record: &[u8]) -> Option<i64> {
        let bytes = record.get(self.offset..self.offset + self.size)?;
        Some(match (self.size, self.signed) {
            (1, false) => i64::from(bytes[0]),
            (1, true) => i64::from(bytes[0].cast_signed()),
            (2, false) => i64::from(u16::from_ne_bytes(bytes.try_into().ok()?)),
            (2, true) => i64::from(i16::from_ne_bytes(bytes.try_into().ok()?)),
            (4, false) => i64::from(u32::from_ne_bytes(bytes.try_into().ok()?)),
            (4, true) => i64::from(i32::from_ne_bytes(bytes.try_into().ok()?)),
            (8, _) => i64::from_ne_bytes(bytes.try_into().ok()?),
            _ => return None,
        })
    }
}

/// How a record stores its addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrLayout {
    /// `sport`/`dport` in host order, `saddr[4]`/`daddr[4]` and
    /// `saddr_v6[16]`/`daddr_v6[16]`, usually with a `family` field. Without
    /// `family`, the v6 copies (v4-mapped for IPv4 sockets) are used.
    Split {
        sport: usize,
        dport: usize,
        family: Option<Scalar>,
        saddr: Option<usize>,
        daddr: Option<usize>,
        saddr_v6: Option<usize>,
        daddr_v6: Option<usize>,
    },
    /// `saddr[28]`/`daddr[28]` holding a `sockaddr_in` or `sockaddr_in6`
    /// (family, port in network order, address), as in 6.x `tcp_send_reset`.
    Sockaddr { saddr: usize, daddr: usize },
}

/// Everything needed about one tracepoint's record on this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLayout {
    pub probe: ProbeId,
    pub size: usize,
    pub skaddr: Option<usize>,
    pub skbaddr: Option<usize>,
    pub addrs: AddrLayout,
    pub protocol: Option<Scalar>,
    pub oldstate: Option<Scalar>,
    pub newstate: Option<Scalar>,
    pub state: Option<Scalar>,
    pub reason: Option<Scalar>,
    pub err: Option<Scalar>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("{tracepoint}: no `{field}` field in this kernel's format")]
    MissingField {
        tracepoint: String,
        field: &'static str,
    },
    #[error(
        "{tracepoint}: record is {size} bytes, more than the {RECORD_CAPACITY} ftptrace copies"
    )]
    TooLarge { tracepoint: String, size: usize },
    #[error(
        "{tracepoint}: field `{field}` is at offset {offset}, beyond what the kernel program can address"
    )]
    OffsetTooLarge {
        tracepoint: String,
        field: &'static str,
        offset: usize,
    },
}

impl RecordLayout {
    pub fn from_format(probe: ProbeId, format: &TracepointFormat) -> Result<Self, LayoutError> {
        let missing = |field: &'static str| LayoutError::MissingField {
            tracepoint: format.name.clone(),
            field,
        };
        let offset = |name: &str| format.field(name).map(|f| f.offset);
        let scalar = |name: &str| format.field(name).map(Scalar::of);

        let addrs = match (format.field("sport"), format.field("dport")) {
            (Some(sport), Some(dport)) => AddrLayout::Split {
                sport: sport.offset,
                dport: dport.offset,
                family: scalar("family"),
                saddr: offset("saddr"),
                daddr: offset("daddr"),
                saddr_v6: offset("saddr_v6"),
                daddr_v6: offset("daddr_v6"),
            },
            _ => match (format.field("saddr"), format.field("daddr")) {
                (Some(s), Some(d)) if s.size >= 24 && d.size >= 24 => AddrLayout::Sockaddr {
                    saddr: s.offset,
                    daddr: d.offset,
                },
                _ => return Err(missing("sport")),
            },
        };
        let layout = Self {
            probe,
            size: format.record_size(),
            skaddr: offset("skaddr"),
            skbaddr: offset("skbaddr"),
            addrs,
            protocol: scalar("protocol"),
            oldstate: scalar("oldstate"),
            newstate: scalar("newstate"),
            state: scalar("state"),
            reason: scalar("reason"),
            err: scalar("err"),
        };
        if layout.size > RECORD_CAPACITY {
            return Err(LayoutError::TooLarge {
                tracepoint: format.name.clone(),
                size: layout.size,
            });
        }
        match probe {
            ProbeId::InetSockSetState => {
                layout.oldstate.ok_or_else(|| missing("oldstate"))?;
                layout.newstate.ok_or_else(|| missing("newstate"))?;
                layout.protocol.ok_or_else(|| missing("protocol"))?;
            }
            ProbeId::TcpRetransmitSkb => {
                layout.state.ok_or_else(|| missing("state"))?;
            }
            _ => {}
        }
        Ok(layout)
    }

    /// The slot the kernel program reads for this tracepoint.
    pub fn kernel_config(&self) -> Result<TracepointConfig, LayoutError> {
        let off = |field: &'static str, offset: usize| {
            u16::try_from(offset)
                .ok()
                .filter(|&o| o != NO_FIELD)
                .ok_or_else(|| LayoutError::OffsetTooLarge {
                    tracepoint: format!("{:?}", self.probe),
                    field,
                    offset,
                })
        };
        let opt = |field: &'static str, offset: Option<usize>| match offset {
            Some(offset) => off(field, offset),
            None => Ok(NO_FIELD),
        };
        let port = |field: &'static str, offset: usize, network_order: u8| {
            Ok::<_, LayoutError>(PortField {
                offset: off(field, offset)?,
                network_order,
                _pad: 0,
            })
        };
        let (sport, dport) = match self.addrs {
            AddrLayout::Split { sport, dport, .. } => {
                (port("sport", sport, 0)?, port("dport", dport, 0)?)
            }
            // sin_port / sin6_port sit right after the 2-byte family.
            AddrLayout::Sockaddr { saddr, daddr } => {
                (port("saddr", saddr + 2, 1)?, port("daddr", daddr + 2, 1)?)
            }
        };
        Ok(TracepointConfig {
            sport,
            dport,
            protocol_offset: opt("protocol", self.protocol.map(|p| p.offset))?,
            protocol_size: self.protocol.map_or(0, |p| p.size as u16),
            skaddr_offset: opt("skaddr", self.skaddr)?,
            skbaddr_offset: opt("skbaddr", self.skbaddr)?,
            enabled: 1,
            _pad: 0,
        })
    }
}

/// Kernel enum names, read from the running kernel.
#[derive(Clone, Debug, Default)]
pub struct KernelNames {
    /// TCP states (`TCP_ESTABLISHED`, ...).
    pub tcp_states: SymbolTable,
    /// `enum sk_rst_reason`, where the kernel reports reset reasons (6.10+).
    pub reset_reasons: Option<SymbolTable>,
}

impl KernelNames {
    /// TCP state names come from `inet_sock_set_state`'s print format, whose
    /// values the kernel resolves to numbers; reset reasons from
    /// `tcp_send_reset`'s. `resolve` maps enum constants left as identifiers.
    pub fn from_formats(
        set_state: Option<&TracepointFormat>,
        send_reset: Option<&TracepointFormat>,
        resolve: &dyn Fn(&str) -> Option<i64>,
    ) -> Self {
        let tcp_states = set_state
            .and_then(|f| f.symbols("newstate", resolve))
            .unwrap_or_else(linux_tcp_states);
        let reset_reasons = send_reset.and_then(|f| f.symbols("reason", resolve));
        Self {
            tcp_states,
            reset_reasons,
        }
    }

    /// `TCP_SYN_SENT` → `SYN_SENT`; unknown numbers print as the number.
    pub fn state_name(&self, value: i64) -> String {
        match self.tcp_states.name(value) {
            Some(name) => name.strip_prefix("TCP_").unwrap_or(name).to_owned(),
            None => value.to_string(),
        }
    }

    pub fn reset_reason(&self, value: i64) -> Option<String> {
        let table = self.reset_reasons.as_ref()?;
        Some(match table.name(value) {
            Some(name) => name.to_string(),
            None => value.to_string(),
        })
    }
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
    use crate::probes::CLASSIC_PROBES;

    pub(crate) fn testdata_format(
        kernel: &str,
        category: &str,
        event: &str,
    ) -> Option<TracepointFormat> {
        let path = format!(
            "{}/testdata/tracepoint-formats/{kernel}/{category}/{event}.format",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).ok()?;
        Some(TracepointFormat::parse(&text).expect("test data parses"))
    }

    pub(crate) fn kernels() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/tracepoint-formats");
        let mut kernels: Vec<String> = std::fs::read_dir(dir)
            .expect("testdata dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        kernels.sort();
        kernels
    }

    /// Every recorded kernel's formats yield a layout for every tracepoint it
    /// has, and the kernel config never points outside the record.
    #[test]
    fn every_recorded_kernel_layout_is_usable() {
        let kernels = kernels();
        assert!(
            kernels.len() >= 2,
            "expected formats from several kernels, found {kernels:?}"
        );
        for kernel in &kernels {
            for probe in CLASSIC_PROBES {
                let Some(format) = testdata_format(kernel, probe.category, probe.name) else {
                    continue;
                };
                let layout = RecordLayout::from_format(probe.id, &format)
                    .unwrap_or_else(|e| panic!("{kernel}: {e}"));
                let cfg = layout.kernel_config().unwrap();
                for offset in [cfg.sport.offset, cfg.dport.offset] {
                    assert!(
                        usize::from(offset) + 2 <= layout.size,
                        "{kernel} {}: port outside record",
                        probe.name
                    );
                }
                if let Some(skaddr) = layout.skaddr {
                    assert!(skaddr + 8 <= layout.size);
                }
            }
        }
    }

    #[test]
    fn send_reset_on_6_18_uses_sockaddrs_in_network_order() {
        let format = testdata_format("6.18", "tcp", "tcp_send_reset").unwrap();
        let layout = RecordLayout::from_format(ProbeId::TcpSendReset, &format).unwrap();
        assert_eq!(
            layout.addrs,
            AddrLayout::Sockaddr {
                saddr: 32,
                daddr: 60
            }
        );
        let cfg = layout.kernel_config().unwrap();
        assert_eq!((cfg.sport.offset, cfg.sport.network_order), (34, 1));
        assert_eq!((cfg.dport.offset, cfg.dport.network_order), (62, 1));
        assert_eq!(cfg.skaddr_offset, 16);
        assert_eq!(cfg.skbaddr_offset, 8);
        assert!(layout.reason.is_some());
    }

    #[test]
    fn set_state_filters_on_protocol() {
        let format = testdata_format("6.18", "sock", "inet_sock_set_state").unwrap();
        let cfg = RecordLayout::from_format(ProbeId::InetSockSetState, &format)
            .unwrap()
            .kernel_config()
            .unwrap();
        assert_eq!((cfg.protocol_offset, cfg.protocol_size), (30, 2));
        assert_eq!((cfg.sport.offset, cfg.dport.offset), (24, 26));
        assert_eq!(cfg.sport.network_order, 0);
    }

    #[test]
    fn a_layout_without_ports_is_refused() {
        let format = TracepointFormat::parse(
            "name: odd\nformat:\n\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n",
        )
        .unwrap();
        assert_eq!(
            RecordLayout::from_format(ProbeId::TcpReceiveReset, &format),
            Err(LayoutError::MissingField {
                tracepoint: "odd".into(),
                field: "sport"
            })
        );
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
