//! One measured run: counters before, the action, quiescence, counters
//! after, tracer stopped. Events and counter deltas then cover exactly the
//! same kernel activity.

use crate::{
    counters::Delta,
    netns::NsPair,
    tracer::{Event, Trace, Tracer},
};

/// What a measured action produced.
pub struct Observed<T> {
    /// What the action returned (e.g. the curl [`crate::client::Transfer`]).
    pub outcome: T,
    pub trace: Trace,
    /// Counter changes in the server namespace.
    pub server: Delta,
    /// Counter changes in the client namespace.
    pub client: Delta,
    /// The tracer's peak resident memory (`VmHWM`, KiB) when it was stopped.
    pub peak_rss_kib: u64,
    server_ns: u64,
    client_ns: u64,
}

/// Runs `action` between two counter snapshots of both namespaces, with
/// `tracer` already running: snapshot, action, wait until neither namespace
/// has sockets other than LISTEN and TIME-WAIT, snapshot, stop the tracer
/// (which checks its end-of-run contract).
#[track_caller]
pub fn observe<T>(net: &NsPair, tracer: Tracer, action: impl FnOnce() -> T) -> Observed<T> {
    observe_with(net, tracer, action, Tracer::stop)
}

/// [`observe`] for a load test: the kernel's recursion misses are allowed
/// if counted ([`Tracer::stop_counting_misses`]).
#[track_caller]
pub fn observe_load<T>(net: &NsPair, tracer: Tracer, action: impl FnOnce() -> T) -> Observed<T> {
    observe_with(net, tracer, action, Tracer::stop_counting_misses)
}

#[track_caller]
fn observe_with<T>(
    net: &NsPair,
    tracer: Tracer,
    action: impl FnOnce() -> T,
    stop: impl FnOnce(Tracer) -> Trace,
) -> Observed<T> {
    let before = net.snapshot();
    let outcome = action();
    net.wait_quiet();
    let after = net.snapshot();
    let peak_rss_kib = tracer.peak_rss_kib();
    let trace = stop(tracer);
    let observed = Observed {
        outcome,
        trace,
        peak_rss_kib,
        server: before.server.delta(&after.server),
        client: before.client.delta(&after.client),
        server_ns: net.server.inode(),
        client_ns: net.client.inode(),
    };
    // Shown with --nocapture, or above a failure.
    eprintln!("{}", observed.summary());
    observed
}

impl<T> Observed<T> {
    /// Events in the server namespace.
    pub fn server_events(&self) -> Vec<&Event> {
        self.in_ns(self.server_ns)
    }

    /// Events in the client namespace.
    pub fn client_events(&self) -> Vec<&Event> {
        self.in_ns(self.client_ns)
    }

    /// Server events that satisfy `pred`.
    pub fn server_where(&self, pred: impl Fn(&Event) -> bool) -> Vec<&Event> {
        self.server_events()
            .into_iter()
            .filter(|e| pred(e))
            .collect()
    }

    /// Client events that satisfy `pred`.
    pub fn client_where(&self, pred: impl Fn(&Event) -> bool) -> Vec<&Event> {
        self.client_events()
            .into_iter()
            .filter(|e| pred(e))
            .collect()
    }

    fn in_ns(&self, ns: u64) -> Vec<&Event> {
        self.trace
            .events
            .iter()
            .filter(|e| e.netns == Some(ns))
            .collect()
    }

    /// Counter deltas and event counts by kind of both namespaces.
    pub fn summary(&self) -> String {
        let sessions: Vec<String> = self
            .trace
            .sessions
            .iter()
            .map(|s| format!("\n  {}", s.brief()))
            .collect();
        format!(
            "server netns {}: counters {}\n  events {}\nclient netns {}: counters {}\n  events {}\nsessions:{}",
            self.server_ns,
            self.server.nonzero(),
            Trace::summary(&self.server_events()),
            self.client_ns,
            self.client.nonzero(),
            Trace::summary(&self.client_events()),
            sessions.concat(),
        )
    }

    /// Counter deltas and every event line of both namespaces, for failure
    /// messages.
    pub fn context(&self) -> String {
        let lines = |events: Vec<&Event>| {
            events
                .iter()
                .map(|e| format!("  {}", e.line))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // Events in neither namespace: usually none; when an expected event
        // is missing, the first place to look.
        let elsewhere: Vec<&Event> = self
            .trace
            .events
            .iter()
            .filter(|e| e.netns != Some(self.server_ns) && e.netns != Some(self.client_ns))
            .collect();
        format!(
            "\nserver netns {} counters: {}\nserver events: {}\n{}\nclient netns {} counters: {}\nclient events: {}\n{}\nevents in other namespaces: {}\n{}\nsessions:\n{}\nlast line: {}\ntracer stderr: {}",
            self.server_ns,
            self.server.nonzero(),
            Trace::summary(&self.server_events()),
            lines(self.server_events()),
            self.client_ns,
            self.client.nonzero(),
            Trace::summary(&self.client_events()),
            lines(self.client_events()),
            elsewhere.len(),
            lines(elsewhere),
            self.trace
                .lines
                .iter()
                .filter(|l| l.starts_with(r#"{"type":"session""#))
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.trace.lines.last().map_or("", String::as_str),
            self.trace.stderr.trim_end(),
        )
    }
}
