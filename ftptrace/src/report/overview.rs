//! The report's first screen: sessions over time by cause (a chart that
//! makes "every Wednesday at three" visible), the clients and servers with
//! the most failures, and what the runs lost.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::{input::SessionLine, time};

/// Causes that are not a failure: a clean end, or one that recovered.
pub fn is_failure(cause: Option<&str>) -> bool {
    !matches!(cause, Some("clean" | "packet_loss_recovered") | None)
}

/// Each cause's colour: failures warm, the rest cool; the same cause
/// always the same colour.
pub fn colour(cause: &str) -> &'static str {
    match cause {
        "clean" => "#5b9bd5",
        "packet_loss_recovered" => "#9ecae1",
        "open" => "#bdbdbd",
        "data_connection_blocked" => "#d62728",
        "data_connection_refused" => "#e377c2",
        "connection_refused" => "#8c564b",
        "middlebox_reset" => "#ff7f0e",
        "peer_reset" => "#ffbb78",
        "retransmission_timeout" => "#9467bd",
        "keepalive_timeout" => "#c5b0d5",
        "server_idle_timeout" => "#bcbd22",
        "client_abort" => "#dbdb8d",
        "server_limit" => "#17becf",
        "tls_failure" => "#2ca02c",
        "receiver_stalled" => "#98df8a",
        "control_lost_during_transfer" => "#7f7f7f",
        "nat_address_mismatch" => "#f7b6d2",
        _ => "#636363",
    }
}

/// A session's cause as the report names it (`open` while none).
pub fn cause_of(session: &SessionLine) -> &str {
    session.cause.as_deref().unwrap_or("open")
}

/// Bucket widths the chart may use, in seconds: the first that makes at
/// most [`MAX_BARS`] bars.
const BUCKETS: [i64; 15] = [
    1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 10_800, 21_600, 43_200, 86_400, 604_800,
];
const MAX_BARS: i64 = 120;
const CHART_WIDTH: i64 = 960;
const CHART_HEIGHT: i64 = 220;

/// Sessions over time, stacked by cause, one bar per bucket of their start.
pub fn chart(sessions: &[SessionLine]) -> Markup {
    let starts: Vec<(i64, &str)> = sessions
        .iter()
        .filter_map(|s| Some((time::parse(&s.start)?, cause_of(s))))
        .collect();
    let (Some(first), Some(last)) = (
        starts.iter().map(|s| s.0).min(),
        starts.iter().map(|s| s.0).max(),
    ) else {
        return html! { p { "No session to chart." } };
    };
    let span_s = (last - first) / 1_000_000_000 + 1;
    let bucket_s = BUCKETS
        .iter()
        .copied()
        .find(|b| span_s / b < MAX_BARS)
        .unwrap_or(604_800);
    let bucket_ns = bucket_s * 1_000_000_000;
    let origin = first.div_euclid(bucket_ns) * bucket_ns;
    let bars = ((last - origin) / bucket_ns + 1) as usize;
    let mut counts: Vec<BTreeMap<&str, u64>> = vec![BTreeMap::new(); bars];
    for (start, cause) in &starts {
        let bar = ((start - origin) / bucket_ns) as usize;
        *counts[bar].entry(cause).or_default() += 1;
    }
    let tallest = counts
        .iter()
        .map(|c| c.values().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let left = 48i64;
    let plot_width = CHART_WIDTH - left - 8;
    let plot_height = CHART_HEIGHT - 40;
    let bar_width = (plot_width / bars as i64).clamp(1, 24);
    let causes: std::collections::BTreeSet<&str> = starts.iter().map(|s| s.1).collect();
    // A label every 160 px at most.
    let tick_every = ((160 + bar_width - 1) / bar_width).max(1) as usize;
    let mut rects = Vec::new();
    for (bar, by_cause) in counts.iter().enumerate() {
        let mut y = plot_height;
        for (cause, &count) in by_cause {
            let height = (count as i64 * (plot_height - 16) / tallest as i64).max(1);
            y -= height;
            rects.push(Bar {
                x: left + bar as i64 * bar_width,
                y,
                height,
                cause,
                count,
                bucket: time::label(origin + bar as i64 * bucket_ns),
            });
        }
    }
    html! {
        svg class="chart" xmlns="http://www.w3.org/2000/svg" width=(CHART_WIDTH) height=(CHART_HEIGHT)
            viewBox={ "0 0 " (CHART_WIDTH) " " (CHART_HEIGHT) } role="img" {
            text x="4" y="12" class="axis" { (tallest) }
            text x="4" y=(plot_height) class="axis" { "0" }
            line x1=(left) y1=(plot_height) x2=(CHART_WIDTH - 8) y2=(plot_height) class="axis-line" {}
            @for rect in &rects {
                rect x=(rect.x) y=(rect.y) width=((bar_width - 1).max(1)) height=(rect.height)
                    fill=(colour(rect.cause)) data-cause=(rect.cause) {
                    title { (rect.bucket) " UTC: " (rect.count) " " (rect.cause) }
                }
            }
            @for bar in (0..bars).step_by(tick_every) {
                text x=(left + bar as i64 * bar_width) y=(CHART_HEIGHT - 20) class="axis" {
                    (time::label(origin + bar as i64 * bucket_ns))
                }
            }
            text x=(left) y=(CHART_HEIGHT - 4) class="axis" {
                "sessions by start, one bar per " (super::ladder::duration(bucket_ns)) " (UTC)"
            }
        }
        ul class="legend" {
            @for cause in &causes {
                li { span class="swatch" style={ "background:" (colour(cause)) } {} (cause) }
            }
        }
    }
}

/// One cause's part of one bar.
struct Bar<'a> {
    x: i64,
    y: i64,
    height: i64,
    cause: &'a str,
    count: u64,
    bucket: String,
}

/// The ten addresses with the most failed sessions, clients and servers.
pub fn most_failing(sessions: &[SessionLine]) -> Markup {
    let mut clients: BTreeMap<&str, u64> = BTreeMap::new();
    let mut servers: BTreeMap<String, u64> = BTreeMap::new();
    for session in sessions.iter().filter(|s| is_failure(s.cause.as_deref())) {
        *clients.entry(&session.client.addr).or_default() += 1;
        *servers.entry(session.server.to_string()).or_default() += 1;
    }
    let top = |counts: Vec<(String, u64)>| {
        let mut counts = counts;
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts.truncate(10);
        counts
    };
    let clients = top(clients
        .into_iter()
        .map(|(a, n)| (a.to_owned(), n))
        .collect());
    let servers = top(servers.into_iter().collect());
    html! {
        div class="tops" {
            @for (title, rows) in [("Clients with the most failed sessions", &clients), ("Servers with the most failed sessions", &servers)] {
                table class="top" {
                    caption { (title) }
                    @if rows.is_empty() { tr { td { "none" } } }
                    @for (who, n) in rows.iter() {
                        tr { td { (who) } td class="n" { (n) } }
                    }
                }
            }
        }
    }
}
