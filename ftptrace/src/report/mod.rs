//! `ftptrace report FILE… -o report.html`: recordings or JSON-lines logs
//! into one self-contained HTML page (no network, no external asset; it
//! opens from a mail attachment): an overview of the sessions over time by
//! cause, the clients and servers that failed most and what the runs lost,
//! then each session with its cause, evidence and ladder diagram, and a
//! filter by client, cause and time that needs no server.
//!
//! Built with maud: every text of the inputs (replies, process names,
//! whatever a log pipeline handed back) is escaped where it is placed.

pub mod input;
pub mod ladder;
pub mod overview;
pub mod time;

use std::path::Path;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::cli::ReportArgs;
use input::{Evidence, SessionLine};

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let evidence = input::read(&args.files)?;
    if evidence.skipped > 0 {
        log::warn!(
            "{} line(s) of the inputs are not ftptrace's lines; skipped",
            evidence.skipped
        );
    }
    let page = render(&evidence).into_string();
    write_whole(&args.output, page.as_bytes())?;
    log::info!(
        "{} sessions from {} input(s) in {}",
        evidence.sessions.len(),
        evidence.inputs.len(),
        args.output.display()
    );
    Ok(())
}

/// Writes `bytes` to a new file beside `path`, then renames it over
/// `path`: a reader never sees half a report, and a symlink at `path` is
/// replaced, not followed.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        anyhow::anyhow!("cannot write report {}: not a file name", path.display())
    })?;
    let mut partial = name.to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = path.with_file_name(partial);
    let written = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        anyhow::bail!("cannot write report {}: {e}", path.display());
    }
    Ok(())
}

/// The page for `evidence`.
pub fn render(evidence: &Evidence) -> Markup {
    let sessions = &evidence.sessions;
    let failed = sessions
        .iter()
        .filter(|s| overview::is_failure(s.cause.as_deref()))
        .count();
    let causes: std::collections::BTreeSet<&str> =
        sessions.iter().map(overview::cause_of).collect();
    let span = match (sessions.first(), sessions.iter().map(|s| &s.end).max()) {
        (Some(first), Some(last)) => format!("{} to {} (UTC)", short(&first.start), short(last)),
        _ => "no sessions".to_owned(),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy"
                    content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "ftptrace report: " (sessions.len()) " sessions" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "ftptrace report" }
                    p class="summary" {
                        (sessions.len()) " sessions, " (failed) " failed, " (span) "."
                    }
                    details class="inputs" {
                        summary { "From " (evidence.inputs.len()) " input(s)" }
                        ul {
                            @for path in &evidence.inputs {
                                li { code { (path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()) } }
                            }
                        }
                    }
                }
                section id="overview" {
                    h2 { "Sessions over time, by cause" }
                    (overview::chart(sessions))
                    (overview::most_failing(sessions))
                    (losses(evidence))
                }
                section id="sessions" {
                    h2 { "Sessions" }
                    form id="filter" onsubmit="return false" {
                        label { "client " input id="f-client" type="search" placeholder="address"; }
                        label { "cause "
                            select id="f-cause" {
                                option value="" { "any" }
                                option value="failed" { "any failure" }
                                @for cause in &causes { option value=(cause) { (cause) } }
                            }
                        }
                        label { "from " input id="f-from" type="text" placeholder="2026-12-04 15:00"; }
                        label { "to " input id="f-to" type="text" placeholder="2026-12-04 16:00"; }
                        output id="f-count" { (sessions.len()) " shown" }
                    }
                    @for session in sessions {
                        (session_section(session, evidence))
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

/// `2026-12-04 20:11:40` of an RFC 3339 time, or the text itself.
fn short(ts: &str) -> String {
    time::parse(ts).map_or_else(|| ts.to_owned(), time::label)
}

fn losses(evidence: &Evidence) -> Markup {
    let spoilt: Vec<&SessionLine> = evidence
        .sessions
        .iter()
        .filter(|s| s.unknown.iter().any(|u| u.contains("lost")))
        .collect();
    let losing: Vec<_> = evidence
        .losses
        .iter()
        .filter(|(_, l)| l.lost > 0 || l.missed > 0)
        .collect();
    html! {
        h3 { "Events lost or missed" }
        @if evidence.losses.is_empty() {
            p { "The inputs hold no stats line: what the runs lost is not known." }
        } @else if losing.is_empty() {
            p class="no-loss" { "None of the " (evidence.losses.len()) " run(s) lost or missed an event." }
        } @else {
            p { (losing.len()) " of " (evidence.losses.len()) " run(s) lost or missed events:" }
            table class="losses" {
                tr { th { "host" } th { "run" } th { "lost (ring full)" } th { "missed (program busy)" } }
                @for ((host, run), loss) in &losing {
                    tr class="loss" {
                        td { (host) } td { code { (run) } } td class="n" { (loss.lost) } td class="n" { (loss.missed) }
                    }
                }
            }
        }
        @if !spoilt.is_empty() {
            p { (spoilt.len()) " session(s) were open while events were lost and may be incomplete: "
                @for (i, session) in spoilt.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href={ "#s-" (session.id) } { (session.id) }
                }
            }
        }
    }
}

fn session_section(session: &SessionLine, evidence: &Evidence) -> Markup {
    let cause = overview::cause_of(session);
    let events = evidence
        .events
        .get(&session.id)
        .map_or(&[][..], Vec::as_slice);
    let marks = ladder::marks(session, events);
    let start = time::parse(&session.start);
    let duration = start
        .zip(time::parse(&session.end))
        .map(|(s, e)| ladder::duration(e - s));
    let hidden_conns =
        session.connections().count().saturating_sub(6) as u64 + session.data_omitted;
    html! {
        section class="session" id={ "s-" (session.id) } data-client=(session.client.addr)
            data-cause=(cause) data-failed=(overview::is_failure(session.cause.as_deref()))
            data-start=(start.unwrap_or(0)) {
            details {
                summary {
                    span class="when" { (short(&session.start)) }
                    " " span class="who" { (session.client) " → " (session.server) }
                    @if let Some(user) = &session.user { " " span class="user" { "user " (user.name) } }
                    @if session.encrypted { " " span class="tls" { "TLS" } }
                    " " span class="cause" style={ "border-color:" (overview::colour(cause)) } { (cause) }
                    @if let Some(duration) = duration { " " span class="duration" { (duration) } }
                    " " span class="host" { "seen on " (session.host.name) }
                }
                div class="detail" {
                    @if !session.evidence.is_empty() {
                        ul class="evidence" { @for line in &session.evidence { li { (line) } } }
                    }
                    @for note in &session.unknown { p class="unknown" { (note) } }
                    (ladder::diagram(session, &marks))
                    @if marks.len() > ladder::MAX_MARKS {
                        p class="more" { (marks.len() - ladder::MAX_MARKS) " marks of the middle not drawn" }
                    }
                    @if hidden_conns > 0 {
                        p class="more" { (hidden_conns) " more data connection(s) not drawn" }
                    }
                }
            }
        }
    }
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 2em 4em; color: #222; }
h1 { margin-bottom: 0; } .summary { color: #555; margin-top: .2em; }
.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .2em 1.2em; }
.swatch { display: inline-block; width: .9em; height: .9em; margin-right: .3em; vertical-align: -1px; }
.tops { display: flex; gap: 3em; } .top caption { text-align: left; font-weight: 600; }
td.n { text-align: right; padding-left: 1em; } tr.loss { color: #b00; }
.axis { font-size: 11px; fill: #555; } .axis-line { stroke: #999; }
#filter { display: flex; flex-wrap: wrap; gap: .5em 1.5em; margin: .5em 0 1em; position: sticky; top: 0; background: #fff; padding: .5em 0; }
section.session { scroll-margin-top: 3.5em; }
section.session summary { cursor: pointer; padding: .15em 0; }
.when { font-variant-numeric: tabular-nums; color: #555; }
.cause { border-left: 6px solid; padding-left: .4em; font-weight: 600; }
.tls, .user, .duration, .host { color: #555; }
.detail { margin: .3em 0 1em 1.5em; } .evidence { margin: .2em 0; } .unknown { color: #b00; }
svg.ladder { display: block; font-size: 11px; margin-top: .5em; }
.lane { stroke: #999; stroke-width: 1.5; } .conn { font-weight: 600; text-anchor: middle; }
.end.server { text-anchor: end; } .end { fill: #555; } .offset, .idle { fill: #777; }
.arrow { stroke: #444; } .label { fill: #222; } .label.command, .label.reply, .label.retransmit, .label.reset-sent, .label.probe { text-anchor: middle; }
.arrow.reply { stroke: #5b9bd5; } .arrow.retransmit { stroke: #9467bd; stroke-dasharray: 4 3; }
.arrow.reset-sent, .dot.reset-received { stroke: #d62728; fill: #d62728; } .label.reset-sent, .label.reset-received, .label.drop, .label.error { fill: #b00; }
.dot.drop { fill: #fff; stroke: #d62728; stroke-width: 2; } .dot.state { fill: #bbb; } .dot.tls { fill: #2ca02c; }
.arrow.probe { stroke: #ff7f0e; } .dot.note { fill: #777; }
marker path { fill: #444; }
[hidden] { display: none; }
"#;

/// The filter: by client address (a part of it), cause (or any failure),
/// and start time (UTC, as the page shows it); no server involved.
const SCRIPT: &str = r#"
(function () {
  const sessions = Array.from(document.querySelectorAll('section.session'));
  const field = id => document.getElementById(id);
  const time = text => {
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(text.trim());
    if (!m) return null;
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0)) * 1e6;
  };
  function apply() {
    const client = field('f-client').value.trim();
    const cause = field('f-cause').value;
    const from = time(field('f-from').value), to = time(field('f-to').value);
    let shown = 0;
    for (const s of sessions) {
      const start = Number(s.dataset.start);
      const ok = (!client || s.dataset.client.includes(client))
        && (!cause || (cause === 'failed' ? s.dataset.failed === 'true' : s.dataset.cause === cause))
        && (from === null || start >= from) && (to === null || start <= to);
      s.hidden = !ok;
      if (ok) shown++;
    }
    field('f-count').textContent = shown + ' shown';
  }
  for (const id of ['f-client', 'f-cause', 'f-from', 'f-to']) {
    field(id).addEventListener('input', apply);
  }
  if (location.hash === '#all') {
    // Every session open: to print the page, or to look at all of it.
    for (const d of document.querySelectorAll('section.session details')) d.open = true;
  } else if (location.hash) {
    const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target) {
      target.querySelector('details').open = true;
      // The browser scrolled before the session opened: again, now.
      target.scrollIntoView();
    }
  }
})();
"#;
