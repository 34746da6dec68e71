//! The one place that talks to the kernel's BPF interface: loads the embedded
//! object, fills the configuration maps, attaches the programs, and hands out
//! the ring buffer and the lost-event counter.

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{Program, ProgramError, RawTracePoint},
};
use ftptrace_common::{KernelOffsets, TimerHooks, maps};

use std::os::fd::AsFd as _;

use crate::{kernel_facts::KernelFacts, output::ProbeStatus, ports::PortSet, prog_stats};

/// The eBPF object built by build.rs from `ftptrace-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ftptrace"));

pub struct Tracer {
    ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    pub probes: Vec<ProbeStatus>,
    /// Names of the programs attached, to detach.
    attached: Vec<&'static str>,
}

impl Tracer {
    pub fn load(facts: &KernelFacts, ports: &PortSet) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !OBJECT.is_empty(),
            "this ftptrace binary was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it with \
             `cargo build --release -p ftptrace`"
        );
        raise_memlock_limit();
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .context("cannot load the eBPF object into the kernel")?;

        let mut port_map: Array<_, u8> = Array::try_from(map(&mut ebpf, maps::PORTS)?)?;
        for (port, role) in ports.entries() {
            port_map
                .set(u32::from(port), role, 0)
                .context("filling the port map")?;
        }
        let mut offsets: Array<_, KernelOffsets> = Array::try_from(map(&mut ebpf, maps::OFFSETS)?)?;
        offsets
            .set(0, facts.offsets, 0)
            .context("filling the offsets map")?;

        let mut attached_programs = Vec::new();
        let mut statuses: Vec<ProbeStatus> = facts
            .probes
            .iter()
            .map(|plan| {
                let attached = plan.program.clone().and_then(|program| {
                    attach(&mut ebpf, program, |p: &mut RawTracePoint| {
                        p.load()?;
                        p.attach(plan.probe.name).map(drop)
                    })?;
                    attached_programs.push(program);
                    Ok(())
                });
                ProbeStatus {
                    name: plan.probe.full_name(),
                    hook: "raw_tracepoint",
                    attached: attached.is_ok(),
                    reason: attached.err(),
                }
            })
            .collect();

        statuses.extend(attach_timer_fallback(
            &mut ebpf,
            facts,
            &mut attached_programs,
        ));

        let ring = RingBuf::try_from(take_map(&mut ebpf, maps::EVENTS)?)?;
        let lost = PerCpuArray::try_from(take_map(&mut ebpf, maps::LOST)?)?;
        Ok(Self {
            ebpf,
            ring,
            lost,
            probes: statuses,
            attached: attached_programs,
        })
    }

    /// Events the kernel dropped because the ring buffer was full, all CPUs.
    pub fn lost(&self) -> anyhow::Result<u64> {
        let per_cpu = self
            .lost
            .get(&0, 0)
            .context("reading the lost-event counter")?;
        Ok(per_cpu.iter().sum())
    }

    /// Events the kernel skipped because a program was already running on
    /// the CPU (an interrupt arriving mid-program), summed over programs.
    pub fn missed(&self) -> anyhow::Result<u64> {
        let mut missed = 0;
        for name in &self.attached {
            let program = self
                .ebpf
                .program(name)
                .context("attached program vanished")?;
            let fd = program.fd().with_context(|| format!("{name} has no fd"))?;
            missed += prog_stats::recursion_misses(fd.as_fd())
                .with_context(|| format!("reading the counters of {name}"))?;
        }
        Ok(missed)
    }

    /// Detaches every program; events already queued stay readable.
    pub fn detach(&mut self) {
        for name in std::mem::take(&mut self.attached) {
            let Some(program) = self.ebpf.program_mut(name) else {
                continue;
            };
            let result = match program {
                Program::RawTracePoint(p) => p.unload(),
                _ => Ok(()),
            };
            if let Err(e) = result {
                eprintln!("ftptrace: warning: detaching {name}: {e}");
            }
        }
    }
}

/// Keepalive and zero-window probes through the socket timers: two
/// programs on `timer:timer_expire_entry`/`_exit`, shared by both kinds.
fn attach_timer_fallback(
    ebpf: &mut Ebpf,
    facts: &KernelFacts,
    attached_programs: &mut Vec<&'static str>,
) -> Vec<ProbeStatus> {
    let attached = facts.timer_hooks.clone().and_then(|hooks| {
        let mut map: Array<_, TimerHooks> = map(ebpf, maps::TIMER_HOOKS)
            .and_then(|m| Ok(Array::try_from(m)?))
            .map_err(|e| format!("{e:#}"))?;
        map.set(0, hooks, 0)
            .map_err(|e| format!("filling the timer map: {e}"))?;
        for program in ["timer_expire_entry", "timer_expire_exit"] {
            attach(ebpf, program, |p: &mut RawTracePoint| {
                p.load()?;
                p.attach(program).map(drop)
            })?;
            attached_programs.push(program);
        }
        Ok(())
    });
    ["keepalive_probe", "zero_window_probe"]
        .into_iter()
        .map(|name| ProbeStatus {
            name: name.into(),
            hook: "timer",
            attached: attached.is_ok(),
            reason: attached.clone().err(),
        })
        .collect()
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

/// An error with its sources on one line (aya nests the syscall error).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
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
