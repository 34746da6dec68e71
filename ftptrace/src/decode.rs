//! Ring buffer bytes → [`KernelEvent`], using the running kernel's record
//! layouts and enum names. Every read is bounds-checked: a malformed record is
//! an error to count, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ftptrace_common::{Event, EventHeader, ProbeId, RECORD_CAPACITY, SockErrorRecord, WIRE_VERSION};

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
        let probe = ProbeId::try_from(raw_probe).map_err(|_| DecodeError::UnknownProbe(raw_probe))?;
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
            scalar.and_then(|s| s.read(record)).ok_or_else(|| field(name))
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
                    Some(_) => layout.state.and_then(|s| s.read(record)).map(|v| self.names.state_name(v)),
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
                (SocketAddr::new(local, sport), SocketAddr::new(remote, dport))
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
