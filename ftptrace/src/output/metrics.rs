//! `--metrics`: what a dashboard of FTP health reads, in the Prometheus
//! text format (0.0.4) or OpenMetrics when the scraper asks for it. The
//! counts are kept here as events and sessions go by; the server that
//! hands them out is `metrics_server.rs`.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::{
    event::EventKind,
    kernel::probes::ProbeStatus,
    session::{Session, cause::Cause},
};

/// Label values one family keeps apart at most: reasons are the kernel's
/// own names, but a family never grows past this ("other" takes the rest).
const MAX_LABEL_VALUES: usize = 64;

/// Counts since the run began.
#[derive(Default)]
pub struct Metrics {
    control_attempted: u64,
    control_established: u64,
    sessions: BTreeMap<&'static str, u64>,
    data: BTreeMap<&'static str, u64>,
    retransmits: u64,
    handshake_retransmits: BTreeMap<&'static str, u64>,
    resets_sent: Labeled,
    resets_received: Labeled,
    keepalive_probes: u64,
    zero_window_probes: u64,
    drops: Labeled,
}

/// What the run reads elsewhere when it is scraped.
pub struct Now<'a> {
    pub sessions_open: usize,
    pub lost: u64,
    pub missed: u64,
    pub unwritten: u64,
    pub ring: RingLevel,
    pub probes: &'a [ProbeStatus],
}

/// The ring buffer's fill, in bytes (`kernel::ring_fill`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RingLevel {
    pub size: u64,
    /// Written by the kernel and not yet read, now.
    pub used: u64,
    /// The most it held when the reader woke, this run: how close a burst
    /// came to `ftptrace_events_lost`.
    pub peak: u64,
}

/// Counts by one label's value, capped at [`MAX_LABEL_VALUES`].
#[derive(Default)]
struct Labeled(BTreeMap<String, u64>);

impl Labeled {
    fn add(&mut self, value: &str) {
        let key = if self.0.contains_key(value) || self.0.len() < MAX_LABEL_VALUES - 1 {
            value
        } else {
            "other"
        };
        *self.0.entry(key.to_owned()).or_default() += 1;
    }
}

impl Metrics {
    /// An event as the pipeline printed it.
    pub fn event(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Retransmit { syn: false, .. } => self.retransmits += 1,
            EventKind::Retransmit {
                syn: true, state, ..
            } => {
                let which = if state.as_str() == "SYN_RECV" {
                    "synack"
                } else {
                    "syn"
                };
                *self.handshake_retransmits.entry(which).or_default() += 1;
            }
            EventKind::ResetSent { reason, .. } => self
                .resets_sent
                .add(reason.as_ref().map_or("unknown", |r| r.as_str())),
            EventKind::ResetReceived { state } => self.resets_received.add(state.as_str()),
            EventKind::KeepaliveProbe { .. } => self.keepalive_probes += 1,
            EventKind::ZeroWindowProbe { .. } => self.zero_window_probes += 1,
            EventKind::Drop { reason, .. } => self
                .drops
                .add(reason.as_ref().map_or("unknown", |r| r.as_str())),
            _ => {}
        }
    }

    /// A session as it was reported, with its cause.
    pub fn session(&mut self, session: &Session, cause: Option<Cause>) {
        self.control_attempted += 1;
        self.control_established += u64::from(session.control.established());
        *self
            .sessions
            .entry(cause.map_or("none", Cause::as_str))
            .or_default() += 1;
        for data in &session.data {
            let outcome = if data.established() {
                "established"
            } else {
                "not_established"
            };
            *self.data.entry(outcome).or_default() += 1;
        }
    }

    /// The page a scrape gets: Prometheus's text format, or OpenMetrics.
    pub fn render(&self, now: &Now, openmetrics: bool) -> String {
        let mut page = Page {
            text: String::new(),
            openmetrics,
        };
        page.counter(
            "ftptrace_control_connections_attempted",
            "FTP control connections seen opening, counted when their session ends",
            &[(vec![], self.control_attempted)],
        );
        page.counter(
            "ftptrace_control_connections_established",
            "FTP control connections that were established, counted when their session ends",
            &[(vec![], self.control_established)],
        );
        let causes = Cause::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(["none"])
            .map(|c| {
                (
                    vec![("cause", c.to_owned())],
                    self.sessions.get(c).copied().unwrap_or(0),
                )
            })
            .collect::<Vec<_>>();
        page.counter(
            "ftptrace_sessions_ended",
            "FTP sessions ended, by cause",
            &causes,
        );
        let outcomes = ["established", "not_established"].map(|o| {
            (
                vec![("outcome", o.to_owned())],
                self.data.get(o).copied().unwrap_or(0),
            )
        });
        page.counter(
            "ftptrace_data_connections",
            "FTP data connections of ended sessions, by outcome",
            &outcomes,
        );
        page.counter(
            "ftptrace_retransmits",
            "Data retransmits on FTP connections (skbs; SYN and SYN-ACK apart)",
            &[(vec![], self.retransmits)],
        );
        let handshakes = ["syn", "synack"].map(|k| {
            (
                vec![("kind", k.to_owned())],
                self.handshake_retransmits.get(k).copied().unwrap_or(0),
            )
        });
        page.counter(
            "ftptrace_handshake_retransmits",
            "SYN and SYN-ACK retransmits on FTP connections",
            &handshakes,
        );
        page.counter(
            "ftptrace_resets_sent",
            "Resets this host sent on FTP connections, by the kernel's reason",
            &labeled("reason", &self.resets_sent),
        );
        page.counter(
            "ftptrace_resets_received",
            "Resets this host accepted on FTP connections, by the socket's state",
            &labeled("state", &self.resets_received),
        );
        page.counter(
            "ftptrace_keepalive_probes",
            "Keepalive probes sent on FTP connections",
            &[(vec![], self.keepalive_probes)],
        );
        page.counter(
            "ftptrace_zero_window_probes",
            "Zero-window probes sent on FTP connections",
            &[(vec![], self.zero_window_probes)],
        );
        page.counter(
            "ftptrace_drops",
            "Packets of FTP connections the kernel dropped, by its reason",
            &labeled("reason", &self.drops),
        );
        page.counter(
            "ftptrace_events_lost",
            "Events the kernel could not queue (ring buffer full)",
            &[(vec![], now.lost)],
        );
        page.counter(
            "ftptrace_events_missed",
            "Program runs the kernel skipped (already running on that CPU)",
            &[(vec![], now.missed)],
        );
        page.counter(
            "ftptrace_output_unwritten_lines",
            "Lines the output file refused (a full disk, a vanished directory)",
            &[(vec![], now.unwritten)],
        );
        page.gauge(
            "ftptrace_ring_buffer_size_bytes",
            "The ring buffer the kernel queues events in (--ring-buffer-mib)",
            &[(vec![], now.ring.size)],
        );
        page.gauge(
            "ftptrace_ring_buffer_used_bytes",
            "Bytes queued in the ring buffer and not yet read, now",
            &[(vec![], now.ring.used)],
        );
        page.gauge(
            "ftptrace_ring_buffer_used_peak_bytes",
            "The most bytes the ring buffer held when the reader woke, this run",
            &[(vec![], now.ring.peak)],
        );
        page.gauge(
            "ftptrace_sessions_open",
            "FTP sessions open now",
            &[(vec![], now.sessions_open as u64)],
        );
        let probes = now
            .probes
            .iter()
            .map(|p| {
                (
                    vec![
                        ("probe", p.name.clone()),
                        ("hook", p.hook.clone()),
                        ("attached", p.attached.to_string()),
                    ],
                    1,
                )
            })
            .collect::<Vec<_>>();
        page.info(
            "ftptrace_probe",
            "Each probe and the hook it attached with",
            &probes,
        );
        if openmetrics {
            page.text.push_str("# EOF\n");
        }
        page.text
    }
}

type Samples = [(Vec<(&'static str, String)>, u64)];

fn labeled(label: &'static str, counts: &Labeled) -> Vec<(Vec<(&'static str, String)>, u64)> {
    counts
        .0
        .iter()
        .map(|(value, n)| (vec![(label, value.clone())], *n))
        .collect()
}

struct Page {
    text: String,
    openmetrics: bool,
}

impl Page {
    fn counter(&mut self, family: &str, help: &str, samples: &Samples) {
        // Prometheus 0.0.4 names the family as its samples (`_total`);
        // OpenMetrics names it without the suffix.
        let head = if self.openmetrics {
            family.to_owned()
        } else {
            format!("{family}_total")
        };
        self.family(&head, "counter", help, &format!("{family}_total"), samples);
    }

    fn gauge(&mut self, family: &str, help: &str, samples: &Samples) {
        self.family(family, "gauge", help, family, samples);
    }

    fn info(&mut self, family: &str, help: &str, samples: &Samples) {
        let (head, kind) = if self.openmetrics {
            (family.to_owned(), "info")
        } else {
            (format!("{family}_info"), "gauge")
        };
        self.family(&head, kind, help, &format!("{family}_info"), samples);
    }

    fn family(&mut self, head: &str, kind: &str, help: &str, sample: &str, samples: &Samples) {
        let _ = writeln!(self.text, "# HELP {head} {help}");
        let _ = writeln!(self.text, "# TYPE {head} {kind}");
        for (labels, value) in samples {
            self.text.push_str(sample);
            if !labels.is_empty() {
                self.text.push('{');
                for (n, (name, value)) in labels.iter().enumerate() {
                    if n > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{name}=\"{}\"", escaped(value));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {value}");
        }
    }
}

/// A label value as the text formats quote it.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Name;

    fn name(text: &str) -> Name {
        Name::from(text)
    }

    fn now() -> Now<'static> {
        Now {
            sessions_open: 2,
            lost: 0,
            missed: 1,
            unwritten: 0,
            ring: RingLevel {
                size: 32 << 20,
                used: 128,
                peak: 4096,
            },
            probes: &[],
        }
    }

    #[test]
    fn counts_events_by_kind_and_label() {
        let mut metrics = Metrics::default();
        for state in ["SYN_SENT", "SYN_RECV", "SYN_RECV"] {
            metrics.event(&EventKind::Retransmit {
                state: name(state),
                syn: true,
                error: None,
                segs: None,
            });
        }
        metrics.event(&EventKind::Retransmit {
            state: name("ESTABLISHED"),
            syn: false,
            error: None,
            segs: Some(2),
        });
        metrics.event(&EventKind::ResetSent {
            reason: Some(name("NO_SOCKET")),
            state: None,
        });
        metrics.event(&EventKind::ResetSent {
            reason: None,
            state: None,
        });
        let page = metrics.render(&now(), false);
        for line in [
            "ftptrace_handshake_retransmits_total{kind=\"syn\"} 1",
            "ftptrace_handshake_retransmits_total{kind=\"synack\"} 2",
            "ftptrace_retransmits_total 1",
            "ftptrace_resets_sent_total{reason=\"NO_SOCKET\"} 1",
            "ftptrace_resets_sent_total{reason=\"unknown\"} 1",
            "ftptrace_sessions_open 2",
            "ftptrace_events_missed_total 1",
            "ftptrace_ring_buffer_size_bytes 33554432",
            "ftptrace_ring_buffer_used_bytes 128",
            "ftptrace_ring_buffer_used_peak_bytes 4096",
            "ftptrace_sessions_ended_total{cause=\"tls_failure\"} 0",
            "# TYPE ftptrace_retransmits_total counter",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} in\n{page}");
        }
        assert!(!page.contains("# EOF"));
    }

    #[test]
    fn openmetrics_names_families_without_total_and_ends_with_eof() {
        let probes = [ProbeStatus {
            name: "tcp:tcp_send_reset".into(),
            hook: "raw_tracepoint".into(),
            target: None,
            attached: true,
            reason: None,
            fell_back: Vec::new(),
        }];
        let page = Metrics::default().render(
            &Now {
                probes: &probes,
                ..now()
            },
            true,
        );
        assert!(page.contains("# TYPE ftptrace_retransmits counter\n"));
        assert!(page.contains("\nftptrace_retransmits_total 0\n"));
        assert!(page.contains("# TYPE ftptrace_probe info\n"));
        assert!(page.contains(
            "ftptrace_probe_info{probe=\"tcp:tcp_send_reset\",hook=\"raw_tracepoint\",attached=\"true\"} 1\n"
        ));
        assert!(page.ends_with("# EOF\n"));
    }

    #[test]
    fn label_values_are_capped_and_escaped() {
        let mut metrics = Metrics::default();
        for n in 0..100 {
            metrics.event(&EventKind::Drop {
                reason: Some(name(&format!("R{n}"))),
                outgoing: false,
                tcp_flags: 0,
                location: None,
            });
        }
        assert_eq!(metrics.drops.0.len(), MAX_LABEL_VALUES);
        assert_eq!(
            metrics.drops.0["other"],
            100 - (MAX_LABEL_VALUES as u64 - 1)
        );
        assert_eq!(escaped("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
