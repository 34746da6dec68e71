//! `ftptrace check`: the preflight. Says, without tracing, whether ftptrace
//! can work here and how: privileges, BTF, tracefs, and for every probe the
//! hook it attaches with or why it is off. It loads and attaches the programs
//! for real (and detaches them at once), so what it reports is what `trace`
//! will get.

use serde::Serialize;

use crate::{
    cli::{CheckArgs, Format},
    kernel::{
        facts::{BTF_PATH, KernelFacts, kernel_release},
        hook_ladder,
        loader::{CHECK_RING_BYTES, CONTROL_CHANNEL_PROBE, DNS_ANSWERS_PROBE, TLS_PROBE, Tracer},
        privileges,
        probes::ProbeStatus,
        tls_libraries::TlsWatch,
        tls_reach::{self, Unreached},
        tracefs,
    },
    output::{HostLine, Origin},
};

/// One line of the preflight: what was checked, and the finding.
#[derive(Debug, Serialize)]
struct Finding {
    ok: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Report {
    #[serde(rename = "type")]
    line_type: &'static str,
    schema: u32,
    /// When the check ran.
    ts: String,
    host: HostLine,
    run: String,
    kernel: String,
    privileges: Finding,
    tracefs: Finding,
    btf: Finding,
    probes: Vec<ProbeStatus>,
    /// Kernel reads the programs could not make while `check` had them
    /// attached (`unreadable` in `stats`): other than 0, some field this
    /// kernel has is not where BTF said.
    unreadable: u64,
    /// Processes with an FTP control port open whose TLS, if they speak
    /// it, the `tls_plaintext` uprobes cannot reach (no OpenSSL or GnuTLS
    /// mapped: statically linked, or no TLS at all).
    tls_unreached: Vec<Unreached>,
    /// Whether `ftptrace trace` can run: the state-change probe attaches.
    ready: bool,
}

/// Prints the preflight; `Ok(false)` when tracing cannot work at all.
pub fn run(args: &CheckArgs) -> anyhow::Result<bool> {
    let report = preflight();
    let ready = report.ready;
    match args.format.unwrap_or(Format::Text) {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    Ok(ready)
}

/// What the capabilities allow: the required ones are there; each optional
/// one missing is named with what it would turn on.
fn privileges_detail() -> String {
    let mut detail = String::from("CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)");
    let effective = privileges::effective().unwrap_or(0);
    for (name, what) in privileges::optional_missing(effective) {
        detail.push_str(&format!("; without {name}, off: {what}"));
    }
    detail
}

fn preflight() -> Report {
    let privileges = match privileges::effective().map(privileges::missing) {
        Ok(missing) if missing.is_empty() => Finding {
            ok: true,
            detail: privileges_detail(),
        },
        Ok(missing) => Finding {
            ok: false,
            detail: format!("missing {}: run as root (sudo)", missing.join(" and ")),
        },
        Err(e) => Finding {
            ok: false,
            detail: format!("cannot read capabilities: {e}"),
        },
    };
    let origin = crate::trace::this_run().unwrap_or_else(|_| Origin::unknown(None));
    let mut report = Report {
        line_type: "check",
        schema: crate::output::SCHEMA,
        ts: crate::kernel::clock::now().to_string(),
        host: origin.host,
        run: origin.run,
        kernel: kernel_release(),
        privileges,
        tracefs: Finding {
            ok: false,
            detail: "not checked".into(),
        },
        btf: Finding {
            ok: false,
            detail: "not checked".into(),
        },
        probes: Vec::new(),
        unreadable: 0,
        tls_unreached: tls_reach::unreached(&crate::cli::PortList::default().port_set().control),
        ready: false,
    };
    let tracefs = match tracefs::find_or_mount() {
        Ok(path) => {
            report.tracefs = Finding {
                ok: true,
                detail: path.display().to_string(),
            };
            path
        }
        Err(e) => {
            report.tracefs.detail = format!("{e:#}");
            return report;
        }
    };
    let facts = match KernelFacts::read(&tracefs) {
        Ok(facts) => {
            report.btf = Finding {
                ok: true,
                detail: BTF_PATH.into(),
            };
            facts
        }
        Err(e) => {
            report.btf.detail = format!("{e:#}");
            return report;
        }
    };
    if !report.privileges.ok {
        // Without privileges nothing loads; say which probes the kernel has.
        let not_tried = |name: String, reason: Option<&String>| ProbeStatus {
            name,
            hook: "off".into(),
            target: None,
            attached: false,
            reason: Some(reason.map_or("not tried: missing privileges".into(), Clone::clone)),
            fell_back: Vec::new(),
        };
        report.probes = facts
            .probes
            .iter()
            .map(|plan| not_tried(plan.probe.full_name(), plan.program.as_ref().err()))
            .chain(
                hook_ladder::LADDERS
                    .iter()
                    .flat_map(|ladder| ladder.serves)
                    .chain([&CONTROL_CHANNEL_PROBE, &DNS_ANSWERS_PROBE, &TLS_PROBE])
                    .map(|name| not_tried((*name).into(), None)),
            )
            .collect();
        return report;
    }
    match Tracer::load(
        &facts,
        &crate::cli::PortList::default().port_set(),
        CHECK_RING_BYTES,
        &TlsWatch::default(),
    ) {
        Ok(mut tracer) => {
            tracer.detach();
            report.probes = tracer.probes.clone();
            report.unreadable = tracer.unreadable().unwrap_or(0);
        }
        Err(e) => {
            report.probes = vec![ProbeStatus {
                name: "all".into(),
                hook: "off".into(),
                target: None,
                attached: false,
                reason: Some(format!("{e:#}")),
                fell_back: Vec::new(),
            }];
        }
    }
    report.ready = report
        .probes
        .iter()
        .any(|p| p.attached && p.name == "sock:inet_sock_set_state");
    report
}

fn render(report: &Report) -> String {
    let mark = |ok: bool| if ok { "ok " } else { "NO " };
    let mut text = format!("kernel      {}\n", report.kernel);
    for (what, finding) in [
        ("privileges", &report.privileges),
        ("tracefs", &report.tracefs),
        ("btf", &report.btf),
    ] {
        text += &format!("{what:<11} {}{}\n", mark(finding.ok), finding.detail);
    }
    for probe in &report.probes {
        let hook = if probe.attached {
            probe.hook.as_str()
        } else {
            "off"
        };
        let target = probe
            .target
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        let reason = probe
            .reason
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default();
        text += &format!(
            "probe       {}{:<28} {hook}{target}{reason}\n",
            mark(probe.attached),
            probe.name
        );
        for why in &probe.fell_back {
            text += &format!("{:<44}   not {why}\n", "");
        }
    }
    if !report.probes.is_empty() {
        text += &format!(
            "reads       {}{} kernel reads failed while attached\n",
            mark(report.unreadable == 0),
            report.unreadable
        );
    }
    for process in &report.tls_unreached {
        text += &format!(
            "tls         -- pid {} ({}) has FTP port {} open and maps no OpenSSL or GnuTLS: \
             if it speaks FTPS, its TLS is built in (statically linked) and out of the \
             uprobes' reach; its sessions are followed from the outside\n",
            process.pid, process.name, process.port
        );
    }
    text += if report.ready {
        "ready: `ftptrace trace` will work\n"
    } else {
        "NOT READY: `ftptrace trace` cannot work here (see above)\n"
    };
    text
}
