//! The one place that talks to the kernel's BPF interface: loads the embedded
//! object, fills the configuration maps, attaches the programs, and hands out
//! the ring buffer and the lost-event counter.

use anyhow::Context as _;
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, FEntry, KProbe, Program,
        ProgramError, RawTracePoint, UProbe, uprobe::UProbeScope,
    },
};
use ftptrace_common::{
    AF_INET, AF_INET6, ActiveEndpoint, KernelOffsets, ProbeId, ProbeSettings, TimerHooks, globals,
    maps, port_role,
};

use std::{cell::OnceCell, fs::File, os::fd::AsFd as _, path::PathBuf};

use super::{
    clock,
    facts::{
        KernelFacts, error_at_close_usable, error_report_usable, probes_out_usable,
        tcp_receive_usable,
    },
    hook_ladder::{self, FORCE_HOOK_ENV, Observes, Rung, Tier},
    probes::{self, ProbeStatus},
    prog_stats,
    ring_fill::RingFill,
    tls_libraries,
};
use crate::ports::{Mark, MarkUpdate, PortSet};

/// The eBPF object built by build.rs from `ftptrace-ebpf`.
pub(super) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ftptrace"));

pub struct Tracer {
    ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    /// How full `ring` is, for the metrics.
    pub ring_fill: RingFill,
    lost: PerCpuArray<MapData, u64>,
    unreadable: PerCpuArray<MapData, u64>,
    rescued: PerCpuArray<MapData, u64>,
    throttled: PerCpuArray<MapData, u64>,
    port_map: Array<MapData, u8>,
    active_expect: HashMap<MapData, ActiveEndpoint, u64>,
    /// Active-mode endpoints marked per port: the port's hint bit goes with
    /// the last one.
    active_ports: std::collections::HashMap<u16, u32>,

    ports: PortSet,
    pub probes: Vec<ProbeStatus>,
    /// Names of the programs attached, to detach.
    attached: Vec<&'static str>,
    /// Recursion misses of the programs already detached, by program:
    /// unloading a program takes its counters with it.
    missed_before_detach: Vec<(&'static str, u64)>,
}

/// The ring buffer of a `check`, which loads to see what attaches and
/// reads nothing.
pub const CHECK_RING_BYTES: u32 = 1 << 20;

impl Tracer {
    /// Loads and attaches every program the facts allow; `ring_bytes` is
    /// the ring buffer's size (a power of two of at least a page).
    pub fn load(
        facts: &KernelFacts,
        ports: &PortSet,
        ring_bytes: u32,
        tls: &tls_libraries::TlsWatch,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !OBJECT.is_empty(),
            "this ftptrace binary was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it with \
             `cargo build --release -p ftptrace`"
        );
        raise_memlock_limit();
        // Where the BTF tracepoint reads a socket: constants to the verifier.
        let o = &facts.offsets;
        let [portpair, family, state, sport] =
            [o.sock_dport, o.sock_family, o.sock_state, o.inet_sport].map(u32::from);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::EVENTS, ring_bytes)
            .override_global(globals::SOCK_PORTPAIR, &portpair, true)
            .override_global(globals::SOCK_FAMILY, &family, true)
            .override_global(globals::SOCK_STATE, &state, true)
            .override_global(globals::TCP_SPORT, &sport, true)
            .load(OBJECT)
            .context("cannot load the eBPF object into the kernel")?;

        let mut port_map: Array<_, u8> = Array::try_from(take_map(&mut ebpf, maps::PORTS)?)?;
        for (port, role) in ports.entries() {
            port_map
                .set(u32::from(port), role, 0)
                .context("filling the port map")?;
        }
        let mut offsets: Array<_, KernelOffsets> = Array::try_from(map(&mut ebpf, maps::OFFSETS)?)?;
        offsets
            .set(0, facts.offsets, 0)
            .context("filling the offsets map")?;

        let forced = hook_ladder::forced_tier()?;
        // aya's view of the kernel BTF, parsed once, only if a BTF
        // tracepoint or fentry rung is tried.
        let kernel_btf = OnceCell::new();
        let mut attached_programs = Vec::new();
        let mut statuses: Vec<ProbeStatus> = facts
            .probes
            .iter()
            .map(|plan| {
                let mut status = ProbeStatus {
                    name: plan.probe.full_name(),
                    hook: "off".into(),
                    target: Some(plan.probe.name.into()),
                    attached: false,
                    reason: None,
                    fell_back: Vec::new(),
                };
                let attached = match plan.program {
                    Err(ref why) => Err(why.clone()),
                    Ok(_) if plan.probe.id == ProbeId::InetSockSetState => {
                        attach_set_state(&mut ebpf, facts, forced, &kernel_btf).map(
                            |(rung, fell_back)| {
                                attached_programs.extend(rung.programs);
                                status.fell_back = fell_back;
                                rung.hook
                            },
                        )
                    }
                    Ok(program) => attach_with_nested_copy(&mut ebpf, program, plan.probe.name)
                        .map(|copy| {
                            attached_programs.extend([program, copy]);
                            "raw_tracepoint"
                        }),
                };
                match attached {
                    Ok(hook) => {
                        status.hook = hook.into();
                        status.attached = true;
                    }
                    Err(why) => status.reason = Some(why),
                }
                status
            })
            .collect();
        let state_attached = statuses
            .iter()
            .any(|s| s.attached && s.name == "sock:inet_sock_set_state");

        let mut error_at_close = false;
        for ladder in hook_ladder::LADDERS {
            let (chosen, fell_back) = climb(ladder.rungs_to_try(forced), |rung| {
                usable(facts, ladder.observes, rung, state_attached)
                    .and_then(|()| attach_rung(&mut ebpf, facts, rung, &kernel_btf))
            });
            if let Some(rung) = &chosen {
                attached_programs.extend(rung.programs);
                error_at_close |=
                    ladder.observes == Observes::SocketErrors && rung.tier == Tier::Fallback;
            }
            for &name in ladder.serves {
                statuses.push(match chosen {
                    Some(rung) => ProbeStatus {
                        name: name.into(),
                        hook: rung.hook.into(),
                        target: Some(rung.target.into()),
                        attached: true,
                        reason: None,
                        fell_back: fell_back.clone(),
                    },
                    None => ProbeStatus {
                        name: name.into(),
                        hook: "off".into(),
                        target: None,
                        attached: false,
                        reason: Some(none_attached(forced, &fell_back, "no hook works here: ")),
                        fell_back: Vec::new(),
                    },
                });
            }
        }
        statuses.push(
            match tcp_receive_usable(&facts.offsets)
                .and_then(|()| attach_control_channel(&mut ebpf))
            {
                Ok(cgroup) => {
                    attached_programs.extend(CONTROL_CHANNEL_PROGRAMS.map(|(name, _)| name));
                    ProbeStatus {
                        name: CONTROL_CHANNEL_PROBE.into(),
                        hook: "cgroup_skb".into(),
                        target: Some(cgroup.display().to_string()),
                        attached: true,
                        reason: None,
                        fell_back: Vec::new(),
                    }
                }
                Err(why) => {
                    // Whatever attached of the pair goes: half a conversation
                    // would parse as a broken one.
                    for (name, _) in CONTROL_CHANNEL_PROGRAMS {
                        if let Some(Program::CgroupSkb(p)) = ebpf.program_mut(name) {
                            let _ = p.unload();
                        }
                    }
                    ProbeStatus {
                        name: CONTROL_CHANNEL_PROBE.into(),
                        hook: "off".into(),
                        target: None,
                        attached: false,
                        reason: Some(why),
                        fell_back: Vec::new(),
                    }
                }
            },
        );
        statuses.push(match attach_dns_answers(&mut ebpf) {
            Ok(cgroup) => {
                attached_programs.push(DNS_ANSWERS_PROGRAM);
                ProbeStatus {
                    name: DNS_ANSWERS_PROBE.into(),
                    hook: "cgroup_skb".into(),
                    target: Some(cgroup.display().to_string()),
                    attached: true,
                    reason: None,
                    fell_back: Vec::new(),
                }
            }
            Err(why) => ProbeStatus {
                name: DNS_ANSWERS_PROBE.into(),
                hook: "off".into(),
                target: None,
                attached: false,
                reason: Some(why),
                fell_back: Vec::new(),
            },
        });
        statuses.push(match attach_tls(&mut ebpf, tls) {
            Ok(tls) => {
                attached_programs.extend(tls.programs);
                ProbeStatus {
                    name: TLS_PROBE.into(),
                    hook: "uprobe".into(),
                    target: Some(tls.watched),
                    attached: true,
                    reason: (!tls.not_watched.is_empty())
                        .then(|| format!("not watched: {}", tls.not_watched.join("; "))),
                    fell_back: Vec::new(),
                }
            }
            Err(why) => ProbeStatus {
                name: TLS_PROBE.into(),
                hook: "off".into(),
                target: None,
                attached: false,
                reason: Some(why),
                fell_back: Vec::new(),
            },
        });

        let mut settings: Array<_, ProbeSettings> =
            Array::try_from(map(&mut ebpf, maps::SETTINGS)?)?;
        settings
            .set(0, facts.probe_settings(error_at_close), 0)
            .context("filling the settings map")?;

        let ring = RingBuf::try_from(take_map(&mut ebpf, maps::EVENTS)?)?;
        let ring_fill =
            RingFill::new(&ring, ring_bytes).context("mapping the ring buffer's positions")?;
        let lost = PerCpuArray::try_from(take_map(&mut ebpf, maps::LOST)?)?;
        let unreadable = PerCpuArray::try_from(take_map(&mut ebpf, maps::UNREADABLE)?)?;
        let throttled = PerCpuArray::try_from(take_map(&mut ebpf, maps::THROTTLED)?)?;
        let rescued = PerCpuArray::try_from(take_map(&mut ebpf, maps::RESCUED)?)?;
        let active_expect = HashMap::try_from(take_map(&mut ebpf, maps::ACTIVE_EXPECT)?)?;
        Ok(Self {
            ebpf,
            ring,
            ring_fill,
            lost,
            unreadable,
            throttled,
            rescued,
            port_map,
            active_expect,
            active_ports: std::collections::HashMap::new(),
            ports: ports.clone(),
            probes: statuses,
            attached: attached_programs,
            missed_before_detach: Vec::new(),
        })
    }

    /// Traces (or stops tracing) what an announcement named: a passive data
    /// port, or a client's active-mode endpoint (its port a hint in the port
    /// map, its address and port in `ACTIVE_EXPECT`). A port in the
    /// configured set keeps its roles either way.
    pub fn apply_mark(&mut self, update: MarkUpdate) -> anyhow::Result<()> {
        let port = match update.mark {
            Mark::Passive(port) | Mark::Active(_, port) => port,
        };
        let before = self.port_map.get(&u32::from(port), 0).unwrap_or(0);
        let mut role = before;
        match update.mark {
            Mark::Passive(_) => {
                if update.on {
                    role |= port_role::EXPECTED_DATA;
                } else {
                    role &= !port_role::EXPECTED_DATA;
                }
            }
            Mark::Active(addr, _) => {
                let key = active_endpoint(addr, port);
                let holders = self.active_ports.entry(port).or_insert(0);
                if update.on {
                    *holders += 1;
                    role |= port_role::ACTIVE_EXPECTED;
                    self.active_expect
                        .insert(key, clock::boot_ns()?, 0)
                        .with_context(|| format!("expecting {addr} port {port}"))?;
                } else {
                    *holders = holders.saturating_sub(1);
                    if *holders == 0 {
                        self.active_ports.remove(&port);
                        role &= !port_role::ACTIVE_EXPECTED;
                    }
                    // Gone already if the kernel's LRU pushed it out.
                    let _ = self.active_expect.remove(&key);
                }
            }
        }
        role |= self.ports.role(port);
        if role != before {
            self.port_map
                .set(u32::from(port), role, 0)
                .with_context(|| format!("updating the port map for port {port}"))?;
        }
        Ok(())
    }

    /// Program runs that could not read what they needed, all CPUs.
    pub fn unreadable(&self) -> anyhow::Result<u64> {
        summed(&self.unreadable, "unreadable-event")
    }

    /// Control segments left out by their connection's budget, all CPUs.
    pub fn throttled(&self) -> anyhow::Result<u64> {
        summed(&self.throttled, "throttled-segment")
    }

    /// Events the kernel dropped because the ring buffer was full, all CPUs.
    pub fn lost(&self) -> anyhow::Result<u64> {
        summed(&self.lost, "lost-event")
    }

    /// Events the kernel skipped because a program was already running on
    /// the CPU (an interrupt arriving mid-program), summed over programs,
    /// less those the nested copies handled (`probes::NESTED_COPIES`).
    pub fn missed(&self) -> anyhow::Result<u64> {
        let missed: u64 = self.misses_by_program()?.iter().map(|(_, n)| n).sum();
        Ok(missed.saturating_sub(self.rescued()?))
    }

    /// Events a nested copy handled because the kernel skipped its first
    /// program.
    pub fn rescued(&self) -> anyhow::Result<u64> {
        summed(&self.rescued, "rescued-event")
    }

    /// Each program's recursion misses that may have lost an event, those
    /// of detached programs included; programs that missed none are left out.
    pub fn misses_by_program(&self) -> anyhow::Result<Vec<(&'static str, u64)>> {
        let mut misses = self.missed_before_detach.clone();
        for &name in &self.attached {
            misses.push((name, self.missed_by(name)?));
        }
        misses.retain(|&(name, n)| n > 0 && !probes::is_nested_copy(name));
        Ok(misses)
    }

    fn missed_by(&self, name: &str) -> anyhow::Result<u64> {
        let program = self
            .ebpf
            .program(name)
            .context("attached program vanished")?;
        let fd = program.fd().with_context(|| format!("{name} has no fd"))?;
        prog_stats::recursion_misses(fd.as_fd())
            .with_context(|| format!("reading the counters of {name}"))
    }

    /// Detaches every program; events already queued stay readable, and
    /// their misses stay counted.
    pub fn detach(&mut self) {
        for name in std::mem::take(&mut self.attached) {
            match self.missed_by(name) {
                Ok(missed) => self.missed_before_detach.push((name, missed)),
                Err(e) => log::warn!("{e:#}"),
            }
            let Some(program) = self.ebpf.program_mut(name) else {
                continue;
            };
            if let Err(e) = unload(program) {
                log::warn!("detaching {name}: {e}");
            }
        }
    }
}

/// The `ACTIVE_EXPECT` key of a client's address and port.
fn active_endpoint(addr: std::net::IpAddr, port: u16) -> ActiveEndpoint {
    let (family, addr) = match addr.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            (AF_INET, bytes)
        }
        std::net::IpAddr::V6(v6) => (AF_INET6, v6.octets()),
    };
    ActiveEndpoint {
        addr,
        port,
        family,
        _pad: 0,
    }
}

/// Unloads (and so detaches) a program of a kind ftptrace attaches.
fn unload(program: &mut Program) -> Result<(), ProgramError> {
    match program {
        Program::BtfTracePoint(p) => p.unload(),
        Program::RawTracePoint(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::CgroupSkb(p) => p.unload(),
        Program::UProbe(p) => p.unload(),
        _ => Ok(()),
    }
}

/// Attaches `sock:inet_sock_set_state`'s programs on the first of its
/// rungs that works here (`hook_ladder::SET_STATE_RUNGS`): the rung, and
/// each rung tried before it with why it did not work.
fn attach_set_state(
    ebpf: &mut Ebpf,
    facts: &KernelFacts,
    forced: Option<Tier>,
    kernel_btf: &OnceCell<Result<Btf, String>>,
) -> Result<(Rung, Vec<String>), String> {
    let rungs = hook_ladder::rungs_to_try(&hook_ladder::SET_STATE_RUNGS, forced);
    let (chosen, fell_back) = climb(rungs, |rung| attach_rung(ebpf, facts, rung, kernel_btf));
    match chosen {
        Some(rung) => Ok((rung, fell_back)),
        None => Err(none_attached(forced, &fell_back, "")),
    }
}

/// Attaches `program` to `tracepoint`, then its nested copy
/// (`probes::NESTED_COPIES`); the copy's name. Both or neither: a first
/// program without its copy would miss events silently.
fn attach_with_nested_copy(
    ebpf: &mut Ebpf,
    program: &'static str,
    tracepoint: &str,
) -> Result<&'static str, String> {
    let copy =
        probes::nested_copy(program).ok_or_else(|| format!("{program} has no nested copy"))?;
    attach_raw_tracepoint(ebpf, program, tracepoint)?;
    attach_raw_tracepoint(ebpf, copy, tracepoint)
        .inspect_err(|_| unload_all(ebpf, &[program]))
        .map(|()| copy)
}

fn unload_all(ebpf: &mut Ebpf, programs: &[&str]) {
    for &name in programs {
        if let Some(program) = ebpf.program_mut(name) {
            let _ = unload(program);
        }
    }
}

/// Tries `rungs` in order until one attaches: that rung, and each rung
/// tried before it with why it did not work.
fn climb(
    rungs: Vec<Rung>,
    mut attempt: impl FnMut(&Rung) -> Result<(), String>,
) -> (Option<Rung>, Vec<String>) {
    let mut fell_back = Vec::new();
    for rung in rungs {
        match attempt(&rung) {
            Ok(()) => return (Some(rung), fell_back),
            Err(why) => fell_back.push(format!("{}: {why}", rung.tier)),
        }
    }
    (None, fell_back)
}

/// Why no rung attached: the forced tier's failure under
/// `FTPTRACE_FORCE_HOOK`, else `unforced` and every rung's.
fn none_attached(forced: Option<Tier>, fell_back: &[String], unforced: &str) -> String {
    let tried = fell_back.join("; ");
    match forced {
        Some(tier) => format!("forced to {tier} ({FORCE_HOOK_ENV}): {tried}"),
        None => format!("{unforced}{tried}"),
    }
}

/// The probe reading the FTP control channel, as the start line names it.
pub const CONTROL_CHANNEL_PROBE: &str = "control_channel";

/// Its programs and where each attaches.
const CONTROL_CHANNEL_PROGRAMS: [(&str, CgroupSkbAttachType); 2] = [
    ("control_ingress", CgroupSkbAttachType::Ingress),
    ("control_egress", CgroupSkbAttachType::Egress),
];

/// Attaches the control-channel programs to the root of the cgroup v2
/// hierarchy, where the kernel runs them for the packets of every socket
/// (sockets belong to the cgroup of the process that made them, and a
/// program on the root applies to every cgroup below it). Returns the
/// cgroup's path.
fn attach_control_channel(ebpf: &mut Ebpf) -> Result<PathBuf, String> {
    let (root, cgroup) = root_cgroup()?;
    for (program, attach_type) in CONTROL_CHANNEL_PROGRAMS {
        attach(ebpf, program, |p: &mut CgroupSkb| {
            p.load()?;
            // aya attaches through a BPF link (5.7+), which the kernel
            // always attaches as BPF_F_ALLOW_MULTI: programs already on the
            // root, and any attached to cgroups below it later, run
            // alongside ours. A link takes no flags (any is EINVAL).
            p.attach(&cgroup, attach_type, CgroupAttachMode::Single)
                .map(drop)
        })?;
    }
    Ok(root)
}

/// The probe reading DNS answers (a client's server names), as the start
/// line names it, and its program.
pub const DNS_ANSWERS_PROBE: &str = "dns_answers";
const DNS_ANSWERS_PROGRAM: &str = "dns_ingress";

/// Attaches the DNS answers' program to the root of the cgroup v2
/// hierarchy, beside the control channel's. Returns the cgroup's path.
fn attach_dns_answers(ebpf: &mut Ebpf) -> Result<PathBuf, String> {
    let (root, cgroup) = root_cgroup()?;
    attach(ebpf, DNS_ANSWERS_PROGRAM, |p: &mut CgroupSkb| {
        p.load()?;
        p.attach(
            &cgroup,
            CgroupSkbAttachType::Ingress,
            CgroupAttachMode::Single,
        )
        .map(drop)
    })?;
    Ok(root)
}

/// The probe reading FTPS control channels in the clear, as the start line
/// names it.
pub const TLS_PROBE: &str = "tls_plaintext";

/// Attaches the TLS libraries' uprobes (`tls_libraries`) to every file of
/// theirs on this host, and the program that ties their objects to
/// sockets. Returns what is watched (each library's files and functions)
/// and the programs attached; an error when no function of any library is.
fn attach_tls(ebpf: &mut Ebpf, tls: &tls_libraries::TlsWatch) -> Result<TlsAttached, String> {
    use tls_libraries::{RETURN_PROGRAM, TIE_PROGRAM, TIE_TRACEPOINT, WATCHED};
    if tls.off {
        return Err("turned off (--no-tls-plaintext)".into());
    }
    attach_raw_tracepoint(ebpf, TIE_PROGRAM, TIE_TRACEPOINT)?;
    let mut programs = vec![TIE_PROGRAM];
    let unload_all = |ebpf: &mut Ebpf, programs: &[&str]| {
        for &name in programs {
            if let Some(program) = ebpf.program_mut(name) {
                let _ = unload(program);
            }
        }
    };
    attach(ebpf, RETURN_PROGRAM, |p: &mut UProbe| p.load())
        .inspect_err(|_| unload_all(ebpf, &programs))?;
    programs.push(RETURN_PROGRAM);
    let mut watched = Vec::new();
    let mut failures = Vec::new();
    for library in WATCHED {
        let files = tls_libraries::files_of(library, &tls.libraries);
        if files.is_empty() {
            failures.push(format!("{}: no file of it on this host", library.name));
        }
        for file in files {
            let mut functions = Vec::new();
            for &(function, entry) in library.functions {
                if !programs.contains(&entry) {
                    if let Err(why) = attach(ebpf, entry, |p: &mut UProbe| p.load()) {
                        failures.push(format!("{entry}: {why}"));
                        continue;
                    }
                    programs.push(entry);
                }
                let attached = attach(ebpf, entry, |p: &mut UProbe| {
                    p.attach(function, &file, UProbeScope::AllProcesses)
                        .map(drop)
                })
                .and_then(|()| {
                    if !library.returns {
                        return Ok(());
                    }
                    attach(ebpf, RETURN_PROGRAM, |p: &mut UProbe| {
                        p.attach(function, &file, UProbeScope::AllProcesses)
                            .map(drop)
                    })
                });
                match attached {
                    Ok(()) => functions.push(function),
                    Err(why) => failures.push(format!("{function} in {}: {why}", file.display())),
                }
            }
            if !functions.is_empty() {
                watched.push(format!(
                    "{} {} ({})",
                    library.name,
                    file.display(),
                    functions.join(", ")
                ));
            }
        }
    }
    if watched.is_empty() {
        unload_all(ebpf, &programs);
        return Err(format!(
            "no TLS library function could be watched: {}",
            failures.join("; ")
        ));
    }
    Ok(TlsAttached {
        watched: watched.join("; "),
        programs,
        not_watched: failures,
    })
}

/// What [`attach_tls`] attached, and what it could not (a library absent, a
/// program the verifier refused, a function a file lacks).
struct TlsAttached {
    watched: String,
    programs: Vec<&'static str>,
    not_watched: Vec<String>,
}

/// The root of the cgroup v2 hierarchy, its path and an open handle.
fn root_cgroup() -> Result<(PathBuf, File), String> {
    if !super::privileges::has(super::privileges::CAP_NET_ADMIN) {
        return Err("attaching to a cgroup needs CAP_NET_ADMIN, which this process lacks".into());
    }
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| format!("cannot read /proc/mounts: {e}"))?;
    let root = cgroup2_mount(&mounts).ok_or_else(|| {
        "no cgroup v2 file system is mounted (e.g. `mount -t cgroup2 none /sys/fs/cgroup`)"
            .to_owned()
    })?;
    let cgroup = File::open(&root).map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    Ok((root, cgroup))
}

/// Mount point of the first cgroup2 file system in /proc/mounts text (its
/// root is the hierarchy's root unless this process is in a cgroup namespace).
fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
        (fs_type == "cgroup2").then(|| PathBuf::from(unescape_mount_field(mount_point)))
    })
}

/// /proc/mounts writes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether this kernel has what `rung` needs, before trying to attach it.
fn usable(
    facts: &KernelFacts,
    observes: Observes,
    rung: &Rung,
    state_attached: bool,
) -> Result<(), String> {
    if rung.tier == Tier::Kprobe {
        facts.kprobes.clone()?;
    }
    match (observes, rung.tier) {
        // No ladder has one (the state change's rungs are not a ladder's).
        (_, Tier::BtfTracepoint) => Err("no BTF tracepoint serves this".into()),
        (Observes::SocketErrors, Tier::RawTracepoint) => facts
            .error_report_tracepoint
            .clone()
            .and_then(|()| error_report_usable(&facts.offsets)),
        (Observes::SocketErrors, Tier::Fentry | Tier::Kprobe) => {
            error_report_usable(&facts.offsets)
        }
        (Observes::SocketErrors, Tier::Fallback) => {
            if !state_attached {
                return Err("sock:inet_sock_set_state is not attached".into());
            }
            error_at_close_usable(&facts.offsets)
        }
        (Observes::ProbesSent, Tier::RawTracepoint | Tier::Fentry | Tier::Kprobe) => {
            facts.probe_mibs.clone().map(drop)?;
            probes_out_usable(&facts.offsets)
        }
        (Observes::ProbesSent, Tier::Fallback) => {
            facts.timer_hooks.clone().map(drop)?;
            probes_out_usable(&facts.offsets)
        }
    }
}

/// Loads and attaches the programs of one rung (none for the CLOSE
/// fallback, which only needs a flag in the settings map). A rung that
/// fails halfway is unloaded whole: a first program without its nested
/// copy would miss events silently, a copy without its first would never
/// act.
fn attach_rung(
    ebpf: &mut Ebpf,
    facts: &KernelFacts,
    rung: &Rung,
    kernel_btf: &OnceCell<Result<Btf, String>>,
) -> Result<(), String> {
    attach_rung_programs(ebpf, facts, rung, kernel_btf)
        .inspect_err(|_| unload_all(ebpf, rung.programs))
}

fn attach_rung_programs(
    ebpf: &mut Ebpf,
    facts: &KernelFacts,
    rung: &Rung,
    kernel_btf: &OnceCell<Result<Btf, String>>,
) -> Result<(), String> {
    let btf = || {
        kernel_btf
            .get_or_init(|| Btf::from_sys_fs().map_err(|e| chain(&e)))
            .as_ref()
            .map_err(Clone::clone)
    };
    match rung.tier {
        Tier::BtfTracepoint => {
            let btf = btf()?;
            for &program in rung.programs {
                attach(ebpf, program, |p: &mut BtfTracePoint| {
                    p.load(rung.target, btf)?;
                    p.attach().map(drop)
                })?;
            }
        }
        Tier::RawTracepoint => {
            for &program in rung.programs {
                let tracepoint = rung.target.rsplit(':').next().unwrap_or(rung.target);
                attach_raw_tracepoint(ebpf, program, tracepoint)?;
            }
        }
        Tier::Fentry => {
            let btf = btf()?;
            for &program in rung.programs {
                attach(ebpf, program, |p: &mut FEntry| {
                    p.load(rung.target, btf)?;
                    p.attach().map(drop)
                })?;
            }
        }
        Tier::Kprobe => {
            for &program in rung.programs {
                attach(ebpf, program, |p: &mut KProbe| {
                    p.load()?;
                    p.attach(rung.target, 0).map(drop)
                })?;
            }
        }
        Tier::Fallback if rung.programs.is_empty() => {}
        Tier::Fallback => {
            let hooks = facts.timer_hooks.clone()?;
            let mut map: Array<_, TimerHooks> = map(ebpf, maps::TIMER_HOOKS)
                .and_then(|m| Ok(Array::try_from(m)?))
                .map_err(|e| format!("{e:#}"))?;
            map.set(0, hooks, 0)
                .map_err(|e| format!("filling the timer map: {e}"))?;
            for &program in rung.programs {
                attach_raw_tracepoint(ebpf, program, program)?;
            }
        }
    }
    Ok(())
}

/// A per-CPU counter of the programs, summed over CPUs.
fn summed(counter: &PerCpuArray<MapData, u64>, what: &str) -> anyhow::Result<u64> {
    let per_cpu = counter
        .get(&0, 0)
        .with_context(|| format!("reading the {what} counter"))?;
    Ok(per_cpu.iter().sum())
}

fn attach_raw_tracepoint(ebpf: &mut Ebpf, program: &str, tracepoint: &str) -> Result<(), String> {
    attach(ebpf, program, |p: &mut RawTracePoint| {
        p.load()?;
        p.attach(tracepoint).map(drop)
    })
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("the eBPF object has no map {name}"))
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<aya::maps::Map> {
    ebpf.take_map(name)
        .with_context(|| format!("the eBPF object has no map {name}"))
}

/// Loads program `name` (of type `P`) and attaches it with `attach`.
fn attach<'a, P: 'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
    attach: impl FnOnce(&mut P) -> Result<(), ProgramError>,
) -> Result<(), String>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let program: &mut P = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("no program {name} in the eBPF object"))?
        .try_into()
        .map_err(|e| chain(&e))?;
    attach(program).map_err(|e| chain(&e))
}

/// An error with its sources on one line (aya nests the syscall error),
/// without aya's empty verifier log.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    one_line(&text)
}

/// A probe's reason is one line: a verifier rejection keeps only the
/// verifier's verdict (the line before its statistics), not its whole log.
fn one_line(text: &str) -> String {
    if std::env::var_os("FTPTRACE_DEBUG_VERIFIER").is_some() {
        eprintln!("{text}");
    }
    let Some((before, log)) = text.split_once(". Verifier output:") else {
        return text.replace('\n', " ");
    };
    let verdict = log
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("verification time"))
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
        .last();
    match verdict {
        Some(verdict) => format!("{before} (verifier: {verdict})"),
        None => before.to_owned(),
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones use
/// the memory cgroup and ignore it. Best effort: failure only matters there.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: passes a valid rlimit struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_is_found_among_v1_hierarchies() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(
            cgroup2_mount(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cgroup2_mount("proc /proc proc rw 0 0\n"), None);
        assert_eq!(cgroup2_mount(""), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(
            cgroup2_mount("none /mnt/my\\040cgroups cgroup2 rw 0 0\n"),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
        assert_eq!(unescape_mount_field("a\\134b"), "a\\b");
        // Not an escape: left as it is.
        assert_eq!(unescape_mount_field("a\\9zz\\"), "a\\9zz\\");
    }

    #[test]
    fn verifier_logs_shrink_to_their_verdict() {
        let log = "the BPF_PROG_LOAD syscall returned Permission denied (os error 13). Verifier output: ; x\n\
                   0: (bf) r6 = r1\ninvalid access to memory, mem_size=384 off=128 size=0\n\
                   R3 min value is outside of the allowed memory range\nverification time 2893 usec\n\
                   stack depth 304+0\n: Permission denied (os error 13)";
        assert_eq!(
            one_line(log),
            "the BPF_PROG_LOAD syscall returned Permission denied (os error 13) \
             (verifier: R3 min value is outside of the allowed memory range)"
        );
        assert_eq!(
            one_line(
                "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1). Verifier output: : Operation not permitted (os error 1)"
            ),
            "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1)"
        );
        assert_eq!(one_line("a\nb"), "a b");
    }
}
