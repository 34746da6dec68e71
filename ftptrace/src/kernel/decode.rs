//! Ring buffer bytes → [`KernelEvent`], with the running kernel's enum
//! names. Records are read through the shared `repr(C)` types of
//! `ftptrace_common::wire` after their length is checked: a malformed
//! record is an error to count, never a panic.

use std::{
    borrow::Cow,
    mem::offset_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
};

use ftptrace_common::{
    AF_INET, AF_INET6, CONTROL_CAPTURE_BYTES, CONTROL_HEAD_BYTES, ControlRecord, ControlSegment,
    Endpoints, Event, EventHeader, ProbeId, WIRE_VERSION, direction, record_flags, segment_flags,
};

use crate::{
    event::{EventKind, KernelEvent, KernelMark, Name, Payload, RetransmitCounts, Segment, Task},
    kernel::{kallsyms::KernelSymbols, names::KernelNames},
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event")]
    Short(usize),
    #[error("{probe:?} record of {len} bytes, expected {expected}")]
    Size {
        probe: ProbeId,
        len: usize,
        expected: usize,
    },
    #[error("control segment record claims {captured} bytes captured of {payload} in the segment")]
    Captured { captured: usize, payload: u32 },
    #[error("record has wire version {0}, this ftptrace reads {WIRE_VERSION}")]
    Version(u16),
    #[error("unknown probe id {0}")]
    UnknownProbe(u16),
    #[error("{probe:?} record: address family {family} is neither IPv4 nor IPv6")]
    Family { probe: ProbeId, family: u16 },
}

/// Decodes records for one kernel.
pub struct Decoder {
    names: KernelNames,
    symbols: KernelSymbols,
    /// Process names by their bytes: a host runs few, and each event names
    /// one. Cleared when full (strangers choose their names).
    comms: foldhash::HashMap<[u8; 16], Name>,
    /// The last one named: a burst of events is mostly one process's.
    last_comm: Option<([u8; 16], Name)>,
}

/// Process names [`Decoder`] remembers at most.
const COMMS_KEPT: usize = 1024;

impl Decoder {
    /// A decoder naming drop locations from /proc/kallsyms.
    pub fn new(names: KernelNames) -> Self {
        Self::with_symbols(names, KernelSymbols::from_proc())
    }

    pub fn with_symbols(names: KernelNames, symbols: KernelSymbols) -> Self {
        Self {
            names,
            symbols,
            comms: foldhash::HashMap::default(),
            last_comm: None,
        }
    }

    /// The process name in `comm` (up to its NUL) as text.
    fn comm(&mut self, comm: [u8; 16]) -> Name {
        if let Some((bytes, name)) = &self.last_comm
            && *bytes == comm
        {
            return name.clone();
        }
        let name = match self.comms.get(&comm) {
            Some(name) => name.clone(),
            None => {
                if self.comms.len() >= COMMS_KEPT {
                    self.comms.clear();
                }
                let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                let name = Name::from(String::from_utf8_lossy(&comm[..len]).into_owned());
                self.comms.insert(comm, name.clone());
                name
            }
        };
        self.last_comm = Some((comm, name.clone()));
        name
    }

    pub fn names(&self) -> &KernelNames {
        &self.names
    }

    /// Kernel code addresses named since the last call.
    pub fn take_new_symbols(&mut self) -> Vec<(u64, String)> {
        self.symbols.take_named()
    }

    pub fn decode(&mut self, bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
        let header: EventHeader = read(bytes).ok_or(DecodeError::Short(bytes.len()))?;
        if bytes.len() < size_of::<Event>() {
            return Err(DecodeError::Short(bytes.len()));
        }
        if header.version != WIRE_VERSION {
            return Err(DecodeError::Version(header.version));
        }
        let probe =
            ProbeId::try_from(header.probe).map_err(|_| DecodeError::UnknownProbe(header.probe))?;
        let size_error = |expected| DecodeError::Size {
            probe,
            len: bytes.len(),
            expected,
        };
        let (sk, ends, kind) = if probe == ProbeId::ControlSegment || probe == ProbeId::TlsPlaintext
        {
            let record: ControlRecord =
                read(bytes).ok_or(size_error(size_of::<ControlRecord>()))?;
            let segment = record.segment;
            let kind = if segment.flags & segment_flags::RESET_TTL != 0 {
                EventKind::ResetTtl {
                    ttl: segment.ttl,
                    usual_ttl: (segment.usual_ttl != 0).then_some(segment.usual_ttl),
                }
            } else {
                let mut decoded = control_segment(&segment)?;
                decoded.decrypted = probe == ProbeId::TlsPlaintext;
                EventKind::ControlSegment(Box::new(decoded))
            };
            (segment.sk, segment.ends, kind)
        } else if probe == ProbeId::DnsAnswer {
            let record: ControlRecord =
                read(bytes).ok_or(size_error(size_of::<ControlRecord>()))?;
            let segment = record.segment;
            let captured = usize::from(segment.captured_len).min(CONTROL_CAPTURE_BYTES);
            // An answer that names no address (another type, a refusal)
            // is not an error: it tells nothing.
            let answer = crate::dns::Answer::parse(&segment.data[..captured]);
            (
                segment.sk,
                segment.ends,
                EventKind::DnsAnswer(answer.map(Box::new)),
            )
        } else {
            let record = read::<Event>(bytes)
                .ok_or(size_error(size_of::<Event>()))?
                .record;
            let kind = self.socket_event(probe, &record);
            // A drop record carries the freeing code's address where a
            // socket record has the socket's.
            let sk = if probe == ProbeId::KfreeSkb {
                0
            } else {
                record.sk
            };
            (sk, record.ends, kind)
        };
        let (local, remote) = addresses(&ends).ok_or(DecodeError::Family {
            probe,
            family: ends.family,
        })?;
        Ok(KernelEvent {
            boot_ns: header.boot_ns,
            cpu: header.cpu,
            current: Task {
                pid: (header.pid_tgid >> 32) as u32,
                comm: self.comm(header.comm),
            },
            netns: (header.netns != 0).then_some(header.netns),
            sock: (sk != 0).then_some(sk),
            local,
            remote,
            kind,
        })
    }

    /// What a socket record of `probe` says.
    fn socket_event(&mut self, probe: ProbeId, r: &ftptrace_common::SockRecord) -> EventKind {
        let state = || self.names.state_name(i64::from(r.state));
        let has_arg = r.flags & record_flags::HAS_ARG != 0;
        match probe {
            ProbeId::InetSockSetState => EventKind::State {
                old: self.names.state_name(r.arg1),
                new: self.names.state_name(r.arg2),
            },
            ProbeId::TcpRetransmitSkb => {
                let state = state();
                EventKind::Retransmit {
                    syn: matches!(state.as_str(), "SYN_SENT" | "SYN_RECV"),
                    state,
                    error: (has_arg && r.arg1 != 0).then_some(r.arg1 as i32),
                    segs: u32::try_from(r.arg2).ok().filter(|&segs| segs != 0),
                }
            }
            // Sent for a request socket, which is NEW_SYN_RECV to the
            // kernel and SYN_RECV to everyone else.
            ProbeId::TcpRetransmitSynack => EventKind::Retransmit {
                state: "SYN_RECV".into(),
                syn: true,
                error: None,
                segs: Some(1),
            },
            ProbeId::TcpSendReset => EventKind::ResetSent {
                reason: if has_arg {
                    self.names.reset_reason(r.arg1)
                } else {
                    None
                },
                state: (r.flags & record_flags::NO_SOCKET == 0).then(state),
            },
            ProbeId::TcpReceiveReset => EventKind::ResetReceived { state: state() },
            // -1 (or no HAS_ARG, from older programs): not known here.
            ProbeId::TcpDestroySock => EventKind::Destroy {
                counts: match (has_arg, u32::try_from(r.arg1), u32::try_from(r.arg2)) {
                    (true, Ok(retransmitted), Ok(duplicates)) => Some(RetransmitCounts {
                        retransmitted,
                        duplicates,
                    }),
                    _ => None,
                },
            },
            ProbeId::InetSkErrorReport => EventKind::SocketError {
                errno: r.arg1 as i32,
            },
            ProbeId::KeepaliveProbe => EventKind::KeepaliveProbe {
                probes_out: r.arg1 as u8,
            },
            ProbeId::ZeroWindowProbe => EventKind::ZeroWindowProbe {
                probes_out: r.arg1 as u8,
            },
            ProbeId::KfreeSkb => EventKind::Drop {
                reason: if has_arg {
                    self.names.drop_reason(r.arg1)
                } else {
                    None
                },
                outgoing: r.arg2 == 1,
                tcp_flags: r.state,
                location: self.symbols.function(r.sk),
            },
            // Read as a control record by the caller.
            ProbeId::TlsVerify => EventKind::TlsVerify(crate::tls_verify::Verdict {
                verifier: crate::tls_verify::Verifier::of_record(r.arg2),
                code: r.arg1 as u32,
            }),
            ProbeId::TlsHandshake => EventKind::TlsHandshake(crate::tls_handshake::Handshake {
                library: crate::tls_verify::Verifier::of_record(r.arg2),
                code: r.arg1 as i32,
            }),
            ProbeId::TlsError => EventKind::TlsError(crate::tls_error::LibraryError {
                library: crate::tls_verify::Verifier::of_record(r.arg2),
                reason: r.arg1 as u32,
            }),
            ProbeId::TlsAlertSent => {
                EventKind::TlsAlertSent(crate::tls_alert::SentAlert::of_record(
                    crate::tls_verify::Verifier::of_record(r.arg2),
                    r.arg1,
                ))
            }
            ProbeId::ControlSegment | ProbeId::DnsAnswer | ProbeId::TlsPlaintext => {
                EventKind::DESTROYED
            }
        }
    }
}

/// A `T` from the start of `bytes`, if they are long enough. `T` is one of
/// the wire types, valid for any bit pattern (`aya::Pod`).
fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked; `T: Pod` is plain old data valid for
    // any bytes; the read is unaligned-safe.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// The part of a control segment record that a socket record lacks.
fn control_segment(segment: &ControlSegment) -> Result<Segment, DecodeError> {
    let captured = usize::from(segment.captured_len);
    if captured > CONTROL_CAPTURE_BYTES || captured as u64 > u64::from(segment.payload_len) {
        return Err(DecodeError::Captured {
            captured,
            payload: segment.payload_len,
        });
    }
    // A SYN's payload (TCP Fast Open) starts one past its sequence number.
    let seq = segment
        .seq
        .wrapping_add(u32::from(segment.tcp_flags & TCP_SYN != 0));
    let marked = segment.marked_port;
    let mark = match segment.flags {
        f if f & segment_flags::MARKED != 0 => Some(KernelMark::Passive(marked)),
        f if f & segment_flags::ACTIVE_MARKED != 0 => Some(KernelMark::Active(marked)),
        _ => None,
    };
    Ok(Segment {
        cookie: segment.cookie,
        outgoing: segment.direction == direction::EGRESS,
        seq,
        payload_len: segment.payload_len,
        redacted: segment.flags & segment_flags::REDACTED != 0,
        payload: Payload::new(&segment.data[..captured]),
        tail_at: (segment.flags & segment_flags::TAIL_APART != 0 && captured > CONTROL_HEAD_BYTES)
            .then_some(CONTROL_HEAD_BYTES),
        mark: mark.filter(|m| !matches!(m, KernelMark::Passive(0) | KernelMark::Active(0))),
        decrypted: false,
    })
}

/// The local and remote socket addresses; IPv4-mapped IPv6
/// (`::ffff:192.0.2.1`, a dual-stack socket talking IPv4) is IPv4.
fn addresses(ends: &Endpoints) -> Option<(SocketAddr, SocketAddr)> {
    let ip = |addr: &[u8; 16]| -> Option<IpAddr> {
        match ends.family {
            AF_INET => Some(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into()),
            AF_INET6 => Some(Ipv6Addr::from(*addr).to_canonical()),
            _ => None,
        }
    };
    Some((
        SocketAddr::new(ip(&ends.local_addr)?, ends.local_port),
        SocketAddr::new(ip(&ends.remote_addr)?, ends.remote_port),
    ))
}

const TCP_SYN: u8 = 0x02;
const SEGMENT_AT: usize = offset_of!(ControlRecord, segment);
const CAPTURED_LEN_AT: usize = SEGMENT_AT + offset_of!(ControlSegment, captured_len);
const SEGMENT_DATA_AT: usize = SEGMENT_AT + offset_of!(ControlSegment, data);

/// The bytes of a record that say something: a control record's unused
/// payload space is left out (a recording keeps only these). A record
/// decode would refuse is kept whole.
pub fn used_len(bytes: &[u8]) -> usize {
    match control_payload_range(bytes) {
        Some(range) => range.end,
        None => bytes.len(),
    }
}

/// Writes `payload` over a control record's captured bytes (of the same
/// length), e.g. after the parser masked its secrets.
pub fn put_control_payload(bytes: &mut [u8], payload: &[u8]) {
    if let Some(range) = control_payload_range(bytes)
        && range.len() == payload.len()
    {
        bytes[range].copy_from_slice(payload);
    }
}

/// Where a well-formed control record's captured payload lies.
fn control_payload_range(bytes: &[u8]) -> Option<Range<usize>> {
    let header: EventHeader = read(bytes)?;
    if bytes.len() < size_of::<ControlRecord>()
        || header.version != WIRE_VERSION
        || !holds_control_record(header.probe)
    {
        return None;
    }
    let captured = bytes.get(CAPTURED_LEN_AT..CAPTURED_LEN_AT + 2)?;
    let captured = usize::from(u16::from_ne_bytes([captured[0], captured[1]]));
    Some(SEGMENT_DATA_AT..SEGMENT_DATA_AT + captured.min(CONTROL_CAPTURE_BYTES))
}

/// The probes whose records are [`ControlRecord`]s: a control segment, its
/// plaintext from the TLS library, or a DNS answer in the same frame.
fn holds_control_record(probe: u16) -> bool {
    probe == ProbeId::ControlSegment as u16
        || probe == ProbeId::TlsPlaintext as u16
        || probe == ProbeId::DnsAnswer as u16
}

/// A record cut to [`used_len`], made whole again for [`Decoder::decode`].
pub fn unused_restored(bytes: &[u8]) -> Cow<'_, [u8]> {
    let full = size_of::<ControlRecord>();
    let is_control = read::<EventHeader>(bytes).is_some_and(|h| holds_control_record(h.probe));
    if is_control && bytes.len() >= SEGMENT_DATA_AT && bytes.len() < full {
        let mut whole = bytes.to_vec();
        whole.resize(full, 0);
        return Cow::Owned(whole);
    }
    Cow::Borrowed(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tracepoint_format::tests::testdata_format;
    use ftptrace_common::SockRecord;

    /// Where the segment's fields are in a control record's bytes.
    const SEGMENT: usize = offset_of!(ControlRecord, segment);

    fn decoder_6_18() -> Decoder {
        Decoder::with_symbols(
            KernelNames::from_formats(
                testdata_format("6.18", "sock", "inet_sock_set_state").as_ref(),
                testdata_format("6.18", "tcp", "tcp_send_reset").as_ref(),
                &|_| None,
            ),
            KernelSymbols::from_text("ffffffff81900000 T nf_hook_slow\n"),
        )
    }

    fn endpoints(family: u16, local: &str, remote: &str) -> Endpoints {
        let (local, remote): (SocketAddr, SocketAddr) =
            (local.parse().unwrap(), remote.parse().unwrap());
        let mut ends = Endpoints {
            family,
            local_port: local.port(),
            remote_port: remote.port(),
            ..Endpoints::NONE
        };
        match (local.ip(), remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                ends.local_addr[..4].copy_from_slice(&l.octets());
                ends.remote_addr[..4].copy_from_slice(&r.octets());
            }
            (IpAddr::V6(l), IpAddr::V6(r)) => {
                (ends.local_addr, ends.remote_addr) = (l.octets(), r.octets());
            }
            _ => panic!("mixed families"),
        }
        ends
    }

    fn record(family: u16, local: &str, remote: &str) -> SockRecord {
        SockRecord {
            sk: 0xffff_8880_0000_1000,
            arg1: 0,
            arg2: 0,
            ends: endpoints(family, local, remote),
            state: 1,
            flags: 0,
            _pad: [0; 6],
        }
    }

    /// The bytes the kernel program writes for `record` under a `probe` header.
    fn event_bytes(probe: ProbeId, record: SockRecord) -> Vec<u8> {
        let event = Event {
            header: EventHeader {
                version: WIRE_VERSION,
                probe: probe as u16,
                cpu: 3,
                boot_ns: 42,
                pid_tgid: (1234u64 << 32) | 1240,
                comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
                netns: 4_026_532_000,
                _pad: 0,
            },
            record,
        };
        // SAFETY: `Event` is plain old data with explicit padding.
        unsafe { std::slice::from_raw_parts((&raw const event).cast::<u8>(), size_of::<Event>()) }
            .to_vec()
    }

    /// A dual-stack socket talking IPv4 reports v4-mapped IPv6 addresses.
    #[test]
    fn v4_mapped_ipv6_is_written_as_ipv4() {
        let mut record = record(
            AF_INET6,
            "[::ffff:192.0.2.2]:40000",
            "[::ffff:192.0.2.1]:21",
        );
        (record.arg1, record.arg2) = (7, 2);
        let event = decoder_6_18()
            .decode(&event_bytes(ProbeId::InetSockSetState, record))
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

    #[test]
    fn ipv6_stays_ipv6() {
        let record = record(AF_INET6, "[2001:db8::1]:21", "[2001:db8::2]:50000");
        let event = decoder_6_18()
            .decode(&event_bytes(ProbeId::TcpReceiveReset, record))
            .unwrap();
        assert_eq!(event.local, "[2001:db8::1]:21".parse().unwrap());
        assert_eq!(event.remote, "[2001:db8::2]:50000".parse().unwrap());
        assert_eq!(
            event.kind,
            EventKind::ResetReceived {
                state: "ESTABLISHED".into()
            }
        );
    }

    #[test]
    fn retransmits_say_syn_and_failure() {
        let mut decoder = decoder_6_18();
        let mut syn = record(AF_INET, "192.0.2.2:40000", "192.0.2.1:30001");
        (syn.state, syn.arg2) = (2, 1);
        let event = decoder
            .decode(&event_bytes(ProbeId::TcpRetransmitSkb, syn))
            .unwrap();
        assert_eq!(
            event.kind,
            EventKind::Retransmit {
                state: "SYN_SENT".into(),
                syn: true,
                error: None,
                segs: Some(1)
            }
        );
        let mut failed = record(AF_INET, "192.0.2.1:30001", "192.0.2.2:40000");
        (failed.arg1, failed.arg2, failed.flags) = (-16, 3, record_flags::HAS_ARG);
        let event = decoder
            .decode(&event_bytes(ProbeId::TcpRetransmitSkb, failed))
            .unwrap();
        assert_eq!(
            event.kind,
            EventKind::Retransmit {
                state: "ESTABLISHED".into(),
                syn: false,
                error: Some(-16),
                segs: Some(3)
            }
        );
        let synack = decoder
            .decode(&event_bytes(ProbeId::TcpRetransmitSynack, failed))
            .unwrap();
        assert!(matches!(
            synack.kind,
            EventKind::Retransmit { syn: true, .. }
        ));
    }

    #[test]
    fn resets_carry_a_reason_only_where_the_kernel_gives_one() {
        let mut decoder = decoder_6_18();
        let mut refused = record(AF_INET, "192.0.2.1:2121", "192.0.2.2:40000");
        (refused.arg1, refused.flags, refused.sk) =
            (1, record_flags::HAS_ARG | record_flags::NO_SOCKET, 0);
        let event = decoder
            .decode(&event_bytes(ProbeId::TcpSendReset, refused))
            .unwrap();
        assert_eq!(event.sock, None);
        assert_eq!(
            event.kind,
            EventKind::ResetSent {
                reason: Some("NO_SOCKET".into()),
                state: None
            }
        );
        // A kernel before 6.10 passes no reason: null, not a guess.
        let old = record(AF_INET, "192.0.2.1:21", "192.0.2.2:40000");
        let event = decoder
            .decode(&event_bytes(ProbeId::TcpSendReset, old))
            .unwrap();
        assert_eq!(
            event.kind,
            EventKind::ResetSent {
                reason: None,
                state: Some("ESTABLISHED".into())
            }
        );
    }

    #[test]
    fn drops_name_the_function_that_freed_the_packet_and_have_no_socket() {
        let mut record = record(AF_INET, "192.0.2.1:30003", "192.0.2.2:40001");
        record.sk = 0xffff_ffff_8190_001c;
        record.state = 0x02;
        record.flags = record_flags::NO_SOCKET;
        let event = decoder_6_18()
            .decode(&event_bytes(ProbeId::KfreeSkb, record))
            .unwrap();
        assert_eq!(
            event.kind,
            EventKind::Drop {
                reason: None,
                outgoing: false,
                tcp_flags: 0x02,
                location: Some("nf_hook_slow".into()),
            }
        );
        assert_eq!(event.sock, None);
    }

    #[test]
    fn socket_errors_carry_the_errno() {
        let mut record = record(AF_INET, "192.0.2.2:40001", "192.0.2.1:30003");
        record.arg1 = 110;
        let event = decoder_6_18()
            .decode(&event_bytes(ProbeId::InetSkErrorReport, record))
            .unwrap();
        assert_eq!(event.kind, EventKind::SocketError { errno: 110 });
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let mut decoder = decoder_6_18();
        let good = record(AF_INET, "192.0.2.1:21", "192.0.2.2:40000");
        assert_eq!(decoder.decode(&[0; 10]), Err(DecodeError::Short(10)));
        let mut bytes = event_bytes(ProbeId::TcpDestroySock, good);
        bytes[0] = 9;
        assert_eq!(decoder.decode(&bytes), Err(DecodeError::Version(9)));
        let mut bytes = event_bytes(ProbeId::TcpDestroySock, good);
        bytes[2] = 77;
        assert_eq!(decoder.decode(&bytes), Err(DecodeError::UnknownProbe(77)));
        let mut odd = good;
        odd.ends.family = 1;
        assert_eq!(
            decoder.decode(&event_bytes(ProbeId::TcpDestroySock, odd)),
            Err(DecodeError::Family {
                probe: ProbeId::TcpDestroySock,
                family: 1
            })
        );
    }

    /// The bytes the `cgroup_skb` programs write for a control segment.
    fn control_bytes(
        local: &str,
        remote: &str,
        direction: u8,
        seq: u32,
        payload: &[u8],
        payload_len: u32,
    ) -> Vec<u8> {
        let family = if local.starts_with('[') {
            AF_INET6
        } else {
            AF_INET
        };
        let mut data = [0xAA; CONTROL_CAPTURE_BYTES];
        data[..payload.len()].copy_from_slice(payload);
        let control = ControlRecord {
            header: EventHeader {
                version: WIRE_VERSION,
                probe: ProbeId::ControlSegment as u16,
                cpu: 1,
                boot_ns: 77,
                pid_tgid: 0,
                comm: [0; 16],
                netns: 4_026_532_001,
                _pad: 0,
            },
            segment: ControlSegment {
                sk: 0xffff_8880_0000_2000,
                cookie: 4242,
                seq,
                payload_len,
                ends: endpoints(family, local, remote),
                direction,
                tcp_flags: 0x18,
                flags: 0,
                ttl: 64,
                usual_ttl: 0,
                _pad: 0,
                captured_len: u16::try_from(payload.len()).unwrap(),
                marked_port: 0,
                _pad2: [0; 6],
                data,
            },
        };
        // SAFETY: `ControlRecord` is plain old data with explicit padding.
        unsafe {
            std::slice::from_raw_parts(
                (&raw const control).cast::<u8>(),
                size_of::<ControlRecord>(),
            )
        }
        .to_vec()
    }

    const REPLY_227: &[u8] = b"227 Entering Passive Mode (192,0,2,1,117,50).\r\n";

    #[test]
    fn control_segments_decode_with_exactly_the_captured_bytes() {
        let bytes = control_bytes(
            "192.0.2.1:21",
            "192.0.2.2:40000",
            direction::EGRESS,
            1000,
            REPLY_227,
            47,
        );
        let event = decoder_6_18().decode(&bytes).unwrap();
        assert_eq!(event.local, "192.0.2.1:21".parse().unwrap());
        assert_eq!(event.remote, "192.0.2.2:40000".parse().unwrap());
        assert_eq!(
            (event.netns, event.sock, event.cpu, event.boot_ns),
            (Some(4_026_532_001), Some(0xffff_8880_0000_2000), 1, 77)
        );
        let EventKind::ControlSegment(segment) = &event.kind else {
            panic!("{event:?}")
        };
        assert_eq!(segment.payload.bytes(), REPLY_227);
        assert_eq!(
            (
                segment.cookie,
                segment.outgoing,
                segment.seq,
                segment.payload_len
            ),
            (4242, true, 1000, 47)
        );
        assert!(!segment.truncated() && !segment.redacted);
        // What the segment says is never in debug output.
        assert!(!format!("{event:?}").contains("Passive"), "{event:?}");
    }

    #[test]
    fn control_segments_over_ipv6_cut_short_and_with_syn() {
        let mut bytes = control_bytes(
            "[2001:db8::2]:40000",
            "[2001:db8::1]:21",
            direction::INGRESS,
            u32::MAX,
            &REPLY_227[..10],
            300,
        );
        // A SYN with data (TCP Fast Open): payload starts at seq + 1.
        bytes[SEGMENT + offset_of!(ControlSegment, tcp_flags)] = 0x02;
        let event = decoder_6_18().decode(&bytes).unwrap();
        assert_eq!(event.local, "[2001:db8::2]:40000".parse().unwrap());
        let EventKind::ControlSegment(segment) = event.kind else {
            panic!()
        };
        assert_eq!((segment.outgoing, segment.seq), (false, 0));
        assert!(segment.truncated());
        assert_eq!(segment.payload.len(), 10);
    }

    #[test]
    fn control_records_are_told_apart_by_probe_and_size() {
        let mut decoder = decoder_6_18();
        let good = control_bytes(
            "192.0.2.1:21",
            "192.0.2.2:40000",
            direction::EGRESS,
            1,
            b"221 Bye\r\n",
            9,
        );
        // A socket-record-sized record claiming to be a control segment.
        let short = &good[..size_of::<Event>()];
        assert_eq!(
            decoder.decode(short),
            Err(DecodeError::Size {
                probe: ProbeId::ControlSegment,
                len: size_of::<Event>(),
                expected: size_of::<ControlRecord>()
            })
        );
        // More captured than the segment had, or than the record holds.
        let captured_at = SEGMENT + offset_of!(ControlSegment, captured_len);
        let mut liar = good.clone();
        liar[captured_at] = 10;
        assert_eq!(
            decoder.decode(&liar),
            Err(DecodeError::Captured {
                captured: 10,
                payload: 9
            })
        );
        let mut huge = good.clone();
        let payload_len_at = SEGMENT + offset_of!(ControlSegment, payload_len);
        huge[payload_len_at..payload_len_at + 4].copy_from_slice(&5000u32.to_ne_bytes());
        huge[captured_at..captured_at + 2].copy_from_slice(&1000u16.to_ne_bytes());
        assert!(matches!(
            decoder.decode(&huge),
            Err(DecodeError::Captured { captured: 1000, .. })
        ));
        // The same bytes under a socket probe's id are a socket record.
        let mut as_state = good;
        as_state[2] = ProbeId::InetSockSetState as u8;
        assert!(matches!(
            decoder.decode(&as_state).unwrap().kind,
            EventKind::State { .. }
        ));
    }
}
