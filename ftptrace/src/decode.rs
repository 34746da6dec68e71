//! Ring buffer bytes → [`KernelEvent`], using the running kernel's record
//! layouts and enum names. Every read is bounds-checked: a malformed record is
//! an error to count, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ftptrace_common::{
    Event, EventHeader, ProbeId, RECORD_CAPACITY, SockErrorRecord, WIRE_VERSION,
};

use crate::{
    event::{EventKind, KernelEvent, Task},
    layout::{AddrLayout, KernelNames, RecordLayout},
};

const AF_INET: i64 = libc::AF_INET as i64;
const AF_INET6: i64 = libc::AF_INET6 as i64;
const HEADER_SIZE: usize = size_of::<EventHeader>();

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event")]
    Short(usize),
    #[error("record has wire version {0}, this ftptrace reads {WIRE_VERSION}")]
    Version(u16),
    #[error("unknown probe id {0}")]
    UnknownProbe(u16),
    #[error("no layout for {0:?} on this kernel")]
    NoLayout(ProbeId),
    #[error("{probe:?} record: cannot read `{field}`")]
    Field { probe: ProbeId, field: &'static str },
    #[error("{probe:?} record: address family {family} is neither IPv4 nor IPv6")]
    Family { probe: ProbeId, family: i64 },
}

/// Decodes records for one kernel.
pub struct Decoder {
    layouts: Vec<Option<RecordLayout>>,
    names: KernelNames,
}

impl Decoder {
    /// `layouts` holds one entry per classic tracepoint this kernel has.
    pub fn new(layouts: impl IntoIterator<Item = RecordLayout>, names: KernelNames) -> Self {
        let mut by_probe = vec![None; ProbeId::InetSkErrorReport as usize];
        for layout in layouts {
            if let Some(slot) = by_probe.get_mut(layout.probe as usize) {
                *slot = Some(layout);
            }
        }
        Self {
            layouts: by_probe,
            names,
        }
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
        if bytes.len() < size_of::<Event>() {
            return Err(DecodeError::Short(bytes.len()));
        }
        let version = u16_at(bytes, 0);
        if version != WIRE_VERSION {
            return Err(DecodeError::Version(version));
        }
        let raw_probe = u16_at(bytes, 2);
        let probe =
            ProbeId::try_from(raw_probe).map_err(|_| DecodeError::UnknownProbe(raw_probe))?;
        let pid_tgid = u64_at(bytes, 16);
        let comm = &bytes[24..40];
        let comm_len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        let netns = u32_at(bytes, 40);
        let record = &bytes[HEADER_SIZE..HEADER_SIZE + RECORD_CAPACITY];

        let decoded = if probe == ProbeId::InetSkErrorReport {
            decode_error_report(record)?
        } else {
            let layout = self
                .layouts
                .get(probe as usize)
                .and_then(Option::as_ref)
                .ok_or(DecodeError::NoLayout(probe))?;
            self.decode_record(layout, record)?
        };
        Ok(KernelEvent {
            boot_ns: u64_at(bytes, 8),
            cpu: u32_at(bytes, 4),
            current: Task {
                pid: (pid_tgid >> 32) as u32,
                comm: String::from_utf8_lossy(&comm[..comm_len]).into_owned(),
            },
            netns: (netns != 0).then_some(netns),
            sock: decoded.sock,
            local: decoded.local,
            remote: decoded.remote,
            kind: decoded.kind,
        })
    }

    fn decode_record(&self, layout: &RecordLayout, record: &[u8]) -> Result<Decoded, DecodeError> {
        let probe = layout.probe;
        let field = |field: &'static str| DecodeError::Field { probe, field };
        let read = |scalar: Option<crate::layout::Scalar>, name: &'static str| {
            scalar
                .and_then(|s| s.read(record))
                .ok_or_else(|| field(name))
        };
        let state = |name: &'static str| read(layout.state, name).map(|v| self.names.state_name(v));
        let sock = layout
            .skaddr
            .map(|at| read_u64(record, at).ok_or_else(|| field("skaddr")))
            .transpose()?
            .filter(|&sk| sk != 0);

        let kind = match probe {
            ProbeId::InetSockSetState => EventKind::State {
                old: self.names.state_name(read(layout.oldstate, "oldstate")?),
                new: self.names.state_name(read(layout.newstate, "newstate")?),
            },
            ProbeId::TcpRetransmitSkb => {
                let state = state("state")?;
                EventKind::Retransmit {
                    syn: matches!(state.as_str(), "SYN_SENT" | "SYN_RECV"),
                    state,
                    error: layout
                        .err
                        .and_then(|e| e.read(record))
                        .filter(|&e| e != 0)
                        .map(|e| e as i32),
                }
            }
            // Sent from the listener on behalf of a request socket: always SYN_RECV.
            ProbeId::TcpRetransmitSynack => EventKind::Retransmit {
                state: "SYN_RECV".into(),
                syn: true,
                error: None,
            },
            ProbeId::TcpSendReset => EventKind::ResetSent {
                reason: layout
                    .reason
                    .and_then(|r| r.read(record))
                    .and_then(|r| self.names.reset_reason(r)),
                state: match sock {
                    Some(_) => layout
                        .state
                        .and_then(|s| s.read(record))
                        .map(|v| self.names.state_name(v)),
                    None => None,
                },
            },
            ProbeId::TcpReceiveReset => EventKind::ResetReceived,
            ProbeId::TcpDestroySock => EventKind::Destroy,
            ProbeId::InetSkErrorReport => return Err(DecodeError::NoLayout(probe)),
        };
        let (local, remote) = match layout.addrs {
            AddrLayout::Split {
                sport,
                dport,
                family,
                saddr,
                daddr,
                saddr_v6,
                daddr_v6,
            } => {
                let sport = read_u16(record, sport).ok_or_else(|| field("sport"))?;
                let dport = read_u16(record, dport).ok_or_else(|| field("dport"))?;
                let v4 = || Some((v4_at(record, saddr?)?, v4_at(record, daddr?)?));
                let v6 = || Some((v6_at(record, saddr_v6?)?, v6_at(record, daddr_v6?)?));
                let (local, remote) = match family.and_then(|f| f.read(record)) {
                    Some(AF_INET) => v4(),
                    Some(AF_INET6) => v6(),
                    Some(family) => return Err(DecodeError::Family { probe, family }),
                    // No family field: the v6 copies hold IPv4 as v4-mapped.
                    None => v6().or_else(v4),
                }
                .ok_or_else(|| field("saddr"))?;
                (
                    SocketAddr::new(local, sport),
                    SocketAddr::new(remote, dport),
                )
            }
            AddrLayout::Sockaddr { saddr, daddr } => (
                sockaddr_at(record, saddr).map_err(|family| match family {
                    Some(family) => DecodeError::Family { probe, family },
                    None => field("saddr"),
                })?,
                sockaddr_at(record, daddr).map_err(|family| match family {
                    Some(family) => DecodeError::Family { probe, family },
                    None => field("daddr"),
                })?,
            ),
        };
        Ok(Decoded {
            sock,
            local: canonical(local),
            remote: canonical(remote),
            kind,
        })
    }
}

struct Decoded {
    sock: Option<u64>,
    local: SocketAddr,
    remote: SocketAddr,
    kind: EventKind,
}

/// A [`SockErrorRecord`] as the raw tracepoint program wrote it.
fn decode_error_report(record: &[u8]) -> Result<Decoded, DecodeError> {
    const _: () = assert!(size_of::<SockErrorRecord>() <= RECORD_CAPACITY);
    let probe = ProbeId::InetSkErrorReport;
    let family = i64::from(u16_at(record, 12));
    let sport = u16::from_be_bytes([record[16], record[17]]);
    let dport = u16::from_be_bytes([record[18], record[19]]);
    let (local, remote): (IpAddr, IpAddr) = match family {
        AF_INET => (ipv4(&record[20..24]).into(), ipv4(&record[24..28]).into()),
        AF_INET6 => (ipv6(&record[28..44]).into(), ipv6(&record[44..60]).into()),
        family => return Err(DecodeError::Family { probe, family }),
    };
    Ok(Decoded {
        sock: Some(u64_at(record, 0)).filter(|&sk| sk != 0),
        local: canonical(SocketAddr::new(local, sport)),
        remote: canonical(SocketAddr::new(remote, dport)),
        kind: EventKind::SocketError {
            errno: i32::from_ne_bytes(record[8..12].try_into().expect("4 bytes")),
        },
    })
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`, a dual-stack socket talking IPv4) is IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A `sockaddr_in`/`sockaddr_in6` copy: family (host order), port (network
/// order), address. `Err(Some(family))` for another family.
fn sockaddr_at(record: &[u8], at: usize) -> Result<SocketAddr, Option<i64>> {
    let family = i64::from(read_u16(record, at).ok_or(None)?);
    let port = record.get(at + 2..at + 4).ok_or(None)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    let ip: IpAddr = match family {
        AF_INET => v4_at(record, at + 4).ok_or(None)?,
        AF_INET6 => v6_at(record, at + 8).ok_or(None)?,
        family => return Err(Some(family)),
    };
    Ok(SocketAddr::new(ip, port))
}

fn v4_at(record: &[u8], at: usize) -> Option<IpAddr> {
    record.get(at..at + 4).map(|b| ipv4(b).into())
}

fn v6_at(record: &[u8], at: usize) -> Option<IpAddr> {
    record.get(at..at + 16).map(|b| ipv6(b).into())
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes"))
}

fn ipv6(bytes: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes"))
}

fn read_u16(record: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(record.get(at..at + 2)?.try_into().ok()?))
}

fn read_u64(record: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(record.get(at..at + 8)?.try_into().ok()?))
}

// Header fields at fixed offsets; callers checked the length first.
const _: () = {
    assert!(std::mem::offset_of!(EventHeader, probe) == 2);
    assert!(std::mem::offset_of!(EventHeader, cpu) == 4);
    assert!(std::mem::offset_of!(EventHeader, boot_ns) == 8);
    assert!(std::mem::offset_of!(EventHeader, pid_tgid) == 16);
    assert!(std::mem::offset_of!(EventHeader, comm) == 24);
    assert!(std::mem::offset_of!(EventHeader, netns) == 40);
    assert!(std::mem::offset_of!(SockErrorRecord, error) == 8);
    assert!(std::mem::offset_of!(SockErrorRecord, family) == 12);
    assert!(std::mem::offset_of!(SockErrorRecord, sport_be) == 16);
    assert!(std::mem::offset_of!(SockErrorRecord, saddr4) == 20);
    assert!(std::mem::offset_of!(SockErrorRecord, saddr6) == 28);
    assert!(std::mem::offset_of!(SockErrorRecord, daddr6) == 44);
};

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use super::*;
    use crate::{
        attribution::SocketTable,
        cli::Format,
        layout::tests::testdata_format,
        output::{Output, Side},
        probes::CLASSIC_PROBES,
        tracepoint_format::TracepointFormat,
    };

    fn decoder_for(kernel: &str) -> Decoder {
        let layouts = CLASSIC_PROBES.iter().filter_map(|probe| {
            let format = testdata_format(kernel, probe.category, probe.name)?;
            Some(RecordLayout::from_format(probe.id, &format).unwrap())
        });
        let names = KernelNames::from_formats(
            testdata_format(kernel, "sock", "inet_sock_set_state").as_ref(),
            testdata_format(kernel, "tcp", "tcp_send_reset").as_ref(),
            &|_| None,
        );
        Decoder::new(layouts, names)
    }

    /// An event buffer: header for `probe` followed by `record`.
    fn event_bytes(probe: ProbeId, record: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; size_of::<Event>()];
        bytes[0..2].copy_from_slice(&WIRE_VERSION.to_ne_bytes());
        bytes[2..4].copy_from_slice(&(probe as u16).to_ne_bytes());
        bytes[4..8].copy_from_slice(&3u32.to_ne_bytes());
        bytes[8..16].copy_from_slice(&42u64.to_ne_bytes());
        bytes[16..24].copy_from_slice(&((1234u64 << 32) | 1240).to_ne_bytes());
        bytes[24..28].copy_from_slice(b"curl");
        bytes[40..44].copy_from_slice(&4_026_532_000u32.to_ne_bytes());
        bytes[HEADER_SIZE..HEADER_SIZE + record.len()].copy_from_slice(record);
        bytes
    }

    fn put(record: &mut [u8], at: usize, value: &[u8]) {
        record[at..at + value.len()].copy_from_slice(value);
    }

    /// 6.18 `inet_sock_set_state`: family@28, sport@24, dport@26, v6 copies @40/@56.
    #[test]
    fn v4_mapped_ipv6_is_written_as_ipv4() {
        let mut record = [0u8; 72];
        put(&mut record, 8, &0xffff_8880_0000_1000u64.to_ne_bytes());
        put(&mut record, 16, &7i32.to_ne_bytes()); // CLOSE
        put(&mut record, 20, &2i32.to_ne_bytes()); // SYN_SENT
        put(&mut record, 24, &40000u16.to_ne_bytes());
        put(&mut record, 26, &21u16.to_ne_bytes());
        put(&mut record, 28, &(libc::AF_INET6 as u16).to_ne_bytes());
        put(&mut record, 30, &6u16.to_ne_bytes());
        put(
            &mut record,
            40,
            &"::ffff:192.0.2.2".parse::<Ipv6Addr>().unwrap().octets(),
        );
        put(
            &mut record,
            56,
            &"::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap().octets(),
        );
        let event = decoder_for("6.18")
            .decode(&event_bytes(ProbeId::InetSockSetState, &record))
            .unwrap();
        assert_eq!(event.local, "192.0.2.2:40000".parse().unwrap());
        assert_eq!(event.remote, "192.0.2.1:21".parse().unwrap());
        assert_eq!(
            event.kind,
            EventKind::State {
                old: "CLOSE".into(),
                new: "SYN_SENT".into()
            }
        );
        assert_eq!(
            event.current,
            Task {
                pid: 1234,
                comm: "curl".into()
            }
        );
        assert_eq!(
            (event.netns, event.cpu, event.boot_ns),
            (Some(4_026_532_000), 3, 42)
        );
        assert_eq!(event.sock, Some(0xffff_8880_0000_1000));
    }

    /// A layout without `family` (as older `tcp_send_reset`) reads the v6
    /// copies, where the kernel stores IPv4 as v4-mapped.
    #[test]
    fn split_layout_without_family_uses_the_v6_copies() {
        let format = TracepointFormat::parse(
            "name: tcp_send_reset\nformat:\n\
             \tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
             \tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;\n\
             \tfield:int state;\toffset:24;\tsize:4;\tsigned:1;\n\
             \tfield:__u16 sport;\toffset:28;\tsize:2;\tsigned:0;\n\
             \tfield:__u16 dport;\toffset:30;\tsize:2;\tsigned:0;\n\
             \tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n\
             \tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;\n\
             \tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n\
             \tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;\n\n\
             print fmt: \"state=%s\", __print_symbolic(REC->state, { 1, \"TCP_ESTABLISHED\" })\n",
        )
        .unwrap();
        let layout = RecordLayout::from_format(ProbeId::TcpSendReset, &format).unwrap();
        let decoder = Decoder::new([layout], KernelNames::default());
        let mut record = [0u8; 72];
        put(&mut record, 16, &0xffffu64.to_ne_bytes());
        put(&mut record, 24, &1i32.to_ne_bytes());
        put(&mut record, 28, &21u16.to_ne_bytes());
        put(&mut record, 30, &50000u16.to_ne_bytes());
        put(
            &mut record,
            40,
            &"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets(),
        );
        put(
            &mut record,
            56,
            &"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets(),
        );
        let event = decoder
            .decode(&event_bytes(ProbeId::TcpSendReset, &record))
            .unwrap();
        assert_eq!(event.local, "[2001:db8::1]:21".parse().unwrap());
        assert_eq!(event.remote, "[2001:db8::2]:50000".parse().unwrap());
        // No reason table on such a kernel: the reason is null, not invented.
        assert_eq!(
            event.kind,
            EventKind::ResetSent {
                reason: None,
                state: Some("1".into())
            }
        );
    }

    #[test]
    fn error_report_records_decode() {
        let mut record = [0u8; 64];
        put(&mut record, 0, &0xffff_1234u64.to_ne_bytes());
        put(&mut record, 8, &110i32.to_ne_bytes());
        put(&mut record, 12, &(libc::AF_INET as u16).to_ne_bytes());
        put(&mut record, 14, &6u16.to_ne_bytes());
        put(&mut record, 16, &40001u16.to_be_bytes());
        put(&mut record, 18, &30003u16.to_be_bytes());
        put(&mut record, 20, &[192, 0, 2, 2]);
        put(&mut record, 24, &[192, 0, 2, 1]);
        let event = decoder_for("6.18")
            .decode(&event_bytes(ProbeId::InetSkErrorReport, &record))
            .unwrap();
        assert_eq!(event.kind, EventKind::SocketError { errno: 110 });
        assert_eq!(event.local, "192.0.2.2:40001".parse().unwrap());
        assert_eq!(event.remote, "192.0.2.1:30003".parse().unwrap());
        put(&mut record, 12, &1u16.to_ne_bytes());
        assert_eq!(
            decoder_for("6.18").decode(&event_bytes(ProbeId::InetSkErrorReport, &record)),
            Err(DecodeError::Family {
                probe: ProbeId::InetSkErrorReport,
                family: 1
            })
        );
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let decoder = decoder_for("6.18");
        assert_eq!(decoder.decode(&[0; 10]), Err(DecodeError::Short(10)));
        let mut bytes = event_bytes(ProbeId::TcpDestroySock, &[]);
        bytes[0] = 9;
        assert_eq!(decoder.decode(&bytes), Err(DecodeError::Version(9)));
        let mut bytes = event_bytes(ProbeId::TcpDestroySock, &[]);
        bytes[2] = 77;
        assert_eq!(decoder.decode(&bytes), Err(DecodeError::UnknownProbe(77)));
        let empty = Decoder::new([], KernelNames::default());
        assert_eq!(
            empty.decode(&event_bytes(ProbeId::TcpDestroySock, &[])),
            Err(DecodeError::NoLayout(ProbeId::TcpDestroySock))
        );
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Records captured from a 6.18 kernel (curl to a closed port 2121 over
    /// IPv4 and IPv6, traced with `--ports 2121`) decode to the lines ftptrace
    /// printed then; only the timestamps, which depend on the boot time, differ.
    #[test]
    fn recorded_6_18_stream_decodes_to_the_recorded_lines() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/records");
        let hex = std::fs::read_to_string(format!("{dir}/6.18-refused-v4-v6.hex")).unwrap();
        let expected = std::fs::read_to_string(format!("{dir}/6.18-refused-v4-v6.jsonl")).unwrap();
        let decoder = decoder_for("6.18");
        let ports = crate::ports::PortSet {
            control: vec![2121],
            passive: None,
        };
        let captured = Captured::default();
        let mut output = Output::new(Format::Json, Box::new(captured.clone()));
        let mut sockets = SocketTable::default();
        for line in hex.lines() {
            let bytes: Vec<u8> = (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
                .collect();
            let event = decoder.decode(&bytes).unwrap();
            let side = if ports.contains(event.local.port()) {
                Side::Server
            } else {
                Side::Client
            };
            output
                .event("ts", &event, &side, &sockets.observe(&event))
                .unwrap();
        }
        output.flush().unwrap();
        let actual = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let without_ts = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|line| {
                    let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
                    value.as_object_mut().unwrap().remove("ts");
                    value
                })
                .collect()
        };
        assert_eq!(without_ts(&actual), without_ts(&expected));
        assert_eq!(without_ts(&expected).len(), 12);
    }
}
