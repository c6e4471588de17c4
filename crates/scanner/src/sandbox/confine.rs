//! What the helper becomes before it reads a container file: the workload's own credentials,
//! no capability in any set, `no_new_privs`, not dumpable, bounded resources, and a seccomp
//! allow-list that kills it on any other system call.

use serde::{Deserialize, Serialize};

/// Address-space limit of the reader: fingerprints read bounded buffers only.
const MAX_ADDRESS_SPACE: u64 = 1 << 30;
const MAX_OPEN_FILES: u64 = 64;

/// Credentials of the reader as it saw them after the drop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Privileges {
    /// Real, effective and saved uid.
    pub uids: [u32; 3],
    pub gids: [u32; 3],
    pub groups: Vec<u32>,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub no_new_privs: bool,
    #[serde(default)]
    pub dumpable: bool,
    /// The seccomp allow-list was installed before the fingerprints ran.
    #[serde(default)]
    pub seccomp: bool,
}

impl Privileges {
    /// True when nothing privileged is left. The uid may be 0 (a root container's workload):
    /// without any capability, root is only the owner of root's files.
    pub fn fully_dropped(&self) -> bool {
        self.cap_effective == 0
            && self.cap_permitted == 0
            && self.cap_inheritable == 0
            && self.cap_bounding == 0
            && self.cap_ambient == 0
            && self.no_new_privs
            && !self.dumpable
            && self.seccomp
    }
}

/// The workload's credentials, as the host sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Limits first (while allowed to set them), then groups, gid, capabilities, uid,
/// `no_new_privs`; then read back and check every item.
pub fn drop_to(creds: &Credentials) -> Result<Privileges, String> {
    use caps::CapSet;
    use nix::sys::resource::{setrlimit, Resource};
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

    let limits = [
        (Resource::RLIMIT_AS, MAX_ADDRESS_SPACE),
        (Resource::RLIMIT_NOFILE, MAX_OPEN_FILES),
        (Resource::RLIMIT_FSIZE, 0),
        (Resource::RLIMIT_CORE, 0),
        // No new processes (seccomp forbids them as well).
        (Resource::RLIMIT_NPROC, 0),
    ];
    for (resource, limit) in limits {
        setrlimit(resource, limit, limit).map_err(|e| format!("setrlimit({resource:?}): {e}"))?;
    }
    let groups: Vec<Gid> = creds.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    let g = Gid::from_raw(creds.gid);
    setresgid(g, g, g).map_err(|e| format!("setresgid({}): {e}", creds.gid))?;
    // The bounding set needs CAP_SETPCAP, so it goes before the uid change.
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("drop bounding: {e}"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clear ambient: {e}"))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| format!("clear inheritable: {e}"))?;
    let u = Uid::from_raw(creds.uid);
    setresuid(u, u, u).map_err(|e| format!("setresuid({}): {e}", creds.uid))?;
    // Leaving uid 0 clears these; staying uid 0 (a root workload) does not.
    caps::clear(None, CapSet::Effective).map_err(|e| format!("clear effective: {e}"))?;
    caps::clear(None, CapSet::Permitted).map_err(|e| format!("clear permitted: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    // Credential changes reset both of these.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(DUMPABLE): {e}"))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    let got = current_privileges()?;
    let mut want_groups = creds.groups.clone();
    want_groups.sort_unstable();
    want_groups.dedup();
    let mut got_groups = got.groups.clone();
    got_groups.sort_unstable();
    got_groups.dedup();
    let dropped = got.uids == [creds.uid; 3]
        && got.gids == [creds.gid; 3]
        && got_groups == want_groups
        && got.cap_effective == 0
        && got.cap_permitted == 0
        && got.cap_inheritable == 0
        && got.cap_bounding == 0
        && got.cap_ambient == 0
        && got.no_new_privs
        && !got.dumpable;
    if !dropped {
        return Err(format!("privileges not fully dropped: {got:?}"));
    }
    Ok(got)
}

fn capset_bits(set: caps::CapSet) -> Result<u64, String> {
    let caps = caps::read(None, set).map_err(|e| format!("read {set:?}: {e}"))?;
    Ok(caps.iter().fold(0u64, |acc, c| {
        acc | 1u64.checked_shl(u32::from(c.index())).unwrap_or(0)
    }))
}

/// What the process really holds now, read back from the kernel.
pub fn current_privileges() -> Result<Privileges, String> {
    use caps::CapSet;
    use nix::unistd::{getgroups, getresgid, getresuid};
    let u = getresuid().map_err(|e| format!("getresuid: {e}"))?;
    let g = getresgid().map_err(|e| format!("getresgid: {e}"))?;
    let groups = getgroups().map_err(|e| format!("getgroups: {e}"))?;
    Ok(Privileges {
        uids: [u.real.as_raw(), u.effective.as_raw(), u.saved.as_raw()],
        gids: [g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw()],
        groups: groups.iter().map(|g| g.as_raw()).collect(),
        cap_effective: capset_bits(CapSet::Effective)?,
        cap_permitted: capset_bits(CapSet::Permitted)?,
        cap_inheritable: capset_bits(CapSet::Inheritable)?,
        cap_bounding: capset_bits(CapSet::Bounding)?,
        cap_ambient: capset_bits(CapSet::Ambient)?,
        no_new_privs: nix::sys::prctl::get_no_new_privs().map_err(|e| e.to_string())?,
        dumpable: nix::sys::prctl::get_dumpable().map_err(|e| e.to_string())?,
        seccomp: false,
    })
}

/// The system calls fingerprinting needs, and nothing else: reading files through
/// `openat2` (never `open`/`openat`, so every path goes through the confined resolver),
/// `fstat`/`statx`, directory listing, memory for the allocator (never executable), writing
/// the answer to stdout/stderr, and exit. Everything else kills the process: `execve`,
/// `fork`, `socket`, `ptrace`, `mount`, `setuid`, `prctl`, ...
pub fn seccomp_filter() -> Result<seccompiler::BpfProgram, String> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
        SeccompFilter, SeccompRule,
    };
    use std::collections::BTreeMap;

    let cond = |arg: u8, op: Op, value: u64| {
        Cond::new(arg, Len::Qword, op, value).map_err(|e| format!("seccomp rule: {e}"))
    };
    let rule = |conds: Vec<Cond>| SeccompRule::new(conds).map_err(|e| format!("seccomp rule: {e}"));
    let exec = u64::try_from(libc::PROT_EXEC).unwrap_or(4);
    let no_exec = || rule(vec![cond(2, Op::MaskedEq(exec), 0)?]);

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let plain = [
        libc::SYS_read,
        libc::SYS_pread64,
        libc::SYS_readv,
        libc::SYS_openat2,
        libc::SYS_close,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_getdents64,
        libc::SYS_fcntl,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_brk,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    for nr in plain {
        rules.insert(nr, Vec::new());
    }
    // Memory, never executable.
    rules.insert(libc::SYS_mmap, vec![no_exec()?]);
    rules.insert(libc::SYS_mprotect, vec![no_exec()?]);
    // The answer and error messages only.
    rules.insert(
        libc::SYS_write,
        vec![
            rule(vec![cond(0, Op::Eq, 1)?])?,
            rule(vec![cond(0, Op::Eq, 2)?])?,
        ],
    );
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e}"))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    filter
        .try_into()
        .map_err(|e| format!("seccomp compile: {e}"))
}

/// Install `program` for the rest of this process's life.
pub fn install(program: &seccompiler::BpfProgram) -> Result<(), String> {
    seccompiler::apply_filter(program).map_err(|e| format!("seccomp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_compiles_for_this_machine() {
        let program = seccomp_filter().unwrap();
        assert!(!program.is_empty());
    }

    #[test]
    fn fully_dropped_needs_every_item() {
        let ok = Privileges {
            uids: [0; 3],
            no_new_privs: true,
            seccomp: true,
            ..Default::default()
        };
        assert!(ok.fully_dropped());
        for broken in [
            Privileges {
                cap_effective: 1,
                ..ok.clone()
            },
            Privileges {
                cap_ambient: 1,
                ..ok.clone()
            },
            Privileges {
                no_new_privs: false,
                ..ok.clone()
            },
            Privileges {
                dumpable: true,
                ..ok.clone()
            },
            Privileges {
                seccomp: false,
                ..ok.clone()
            },
        ] {
            assert!(!broken.fully_dropped(), "{broken:?}");
        }
    }
}
