//! The capabilities ftptrace needs, named before anything is tried (so a
//! missing one is not a bare EPERM from the verifier), and dropped once the
//! programs are attached: the rest of the run reads bytes strangers sent,
//! and needs little.

pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_NICE: u32 = 23;
pub const CAP_SYSLOG: u32 = 34;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;
/// The highest capability number any kernel we run on defines.
const CAP_LAST: u32 = 40;

/// Capabilities that turn on a part of ftptrace, and what that part is:
/// without one, that part is off and the rest works.
pub const OPTIONAL: [(u32, &str, &str); 4] = [
    (
        CAP_NET_ADMIN,
        "CAP_NET_ADMIN",
        "the control channel (attaching cgroup_skb programs), and one session for both ends of \
         a connection through a NAT on this host (asking its connection tracking)",
    ),
    (
        CAP_SYSLOG,
        "CAP_SYSLOG",
        "the timer fallback for keepalive and zero-window probes, and the names of drop \
         locations (kernel symbol addresses in /proc/kallsyms)",
    ),
    (
        CAP_SYS_ADMIN,
        "CAP_SYS_ADMIN",
        "seeding the sessions already open in other network namespaces, and asking the \
         connection tracking of a NAT in another one (setns)",
    ),
    (
        CAP_SYS_NICE,
        "CAP_SYS_NICE",
        "running ahead of the traffic it traces (nice -10), so that a load which keeps every \
         core busy does not make it fall behind and lose events",
    ),
];

/// What a run keeps once attached: CAP_BPF for the bpf() calls on its own
/// maps (counters, port marks; kernels before 6.5 check it on every call),
/// CAP_SYSLOG to name the kernel functions where packets are dropped.
pub const KEPT_WHILE_RUNNING: [u32; 2] = [CAP_BPF, CAP_SYSLOG];

/// Names of the missing capabilities, empty when ftptrace may load its
/// programs: CAP_BPF and CAP_PERFMON (tracing programs, kernel memory reads),
/// or CAP_SYS_ADMIN, which implies both.
pub fn missing(effective: u64) -> Vec<&'static str> {
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect()
}

/// Whether this process has `cap` in its effective set (false when that
/// cannot be read).
pub fn has(cap: u32) -> bool {
    effective().is_ok_and(|set| set & (1 << cap) != 0)
}

/// The optional capabilities `effective` lacks, with what each would turn on.
pub fn optional_missing(effective: u64) -> Vec<(&'static str, &'static str)> {
    OPTIONAL
        .iter()
        .filter(|(cap, _, _)| effective & (1 << cap) == 0)
        .map(|&(_, name, what)| (name, what))
        .collect()
}

/// Reading tracefs: its files are root's, mode 0600/0700.
pub fn tracefs_hint() -> &'static str {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 && !has(CAP_DAC_READ_SEARCH) {
        " (tracefs is root's: run as root, or with CAP_DAC_READ_SEARCH)"
    } else {
        ""
    }
}

/// Drops every capability but those in `keep` from the effective,
/// permitted, inheritable and ambient sets (and from the bounding set when
/// CAP_SETPCAP allows), and sets no_new_privs: nothing this process runs
/// later, and nothing a bug in it could be made to do, gets more. Returns
/// the effective set now.
pub fn keep_only(keep: &[u32]) -> std::io::Result<u64> {
    let keep_mask = keep.iter().fold(0u64, |mask, cap| mask | (1 << cap));
    // The bounding set first: dropping from it takes CAP_SETPCAP, which
    // goes below. EINVAL is a capability this kernel does not know.
    for cap in (0..=CAP_LAST).filter(|cap| keep_mask & (1 << cap) == 0) {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINVAL)
                && error.raw_os_error() != Some(libc::EPERM)
            {
                return Err(error);
            }
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills `data`, two structs as version 3 wants.
    if unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for (half, set) in data.iter_mut().enumerate() {
        let keep = (keep_mask >> (32 * half)) as u32;
        set.effective &= keep;
        set.permitted &= keep;
        set.inheritable &= keep;
    }
    // SAFETY: capset reads `data`, as above. Lowering the permitted set
    // also empties the ambient set of what it dropped.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    effective()
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit half of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The effective capability set of this process (`CapEff` in /proc/self/status).
pub fn effective() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    parse_cap_eff(&status)
        .ok_or_else(|| std::io::Error::other("no CapEff line in /proc/self/status"))
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// The one-line error for missing capabilities.
pub fn check() -> anyhow::Result<()> {
    let missing = missing(effective()?);
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "missing {}: ftptrace loads eBPF programs and needs root, or CAP_BPF and CAP_PERFMON \
         (e.g. `sudo ftptrace`)",
        missing.join(" and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_or_bpf_and_perfmon() {
        assert!(missing(u64::MAX).is_empty());
        assert!(missing(1 << CAP_SYS_ADMIN).is_empty());
        assert!(missing((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_empty());
        assert_eq!(missing(1 << CAP_BPF), ["CAP_PERFMON"]);
        assert_eq!(missing(0), ["CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn optional_capabilities_say_what_they_turn_on() {
        assert!(optional_missing(u64::MAX).is_empty());
        let names: Vec<&str> = optional_missing(1 << CAP_SYS_ADMIN)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["CAP_NET_ADMIN", "CAP_SYSLOG", "CAP_SYS_NICE"]);
        assert!(optional_missing(0)[0].1.contains("control channel"));
    }

    #[test]
    fn reads_cap_eff() {
        let status = "Name:\tftptrace\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }
}
