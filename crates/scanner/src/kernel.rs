//! What the scanner needs from its node, checked at start: the capabilities it uses (each
//! with its reason; the DaemonSet grants exactly these) and every kernel feature the sandbox
//! relies on, tried once, so a node that lacks one fails at start with one line that names
//! it, instead of every container failing later. Floor: Linux 5.12 (mount_setattr); see
//! `docs/security.md`.

use caps::Capability;

use std::os::fd::OwnedFd;

/// The capabilities the scanner uses, and why. `deploy/` adds exactly these (after dropping
/// all) and the system test `scanner_container` shows the scan fails without each one.
pub const REQUIRED_CAPABILITIES: &[(Capability, &str)] = &[
    (
        Capability::CAP_SYS_ADMIN,
        "join a container's mount namespace, clone its mount tree (open_tree), make the copy read-only and nodev (mount_setattr)",
    ),
    (
        Capability::CAP_SYS_CHROOT,
        "join a mount namespace (setns requires it) and chroot into the copy",
    ),
    (
        Capability::CAP_SYS_PTRACE,
        "read other users' /proc/<pid>/{environ,exe,cwd} (ptrace-read access)",
    ),
    (
        Capability::CAP_DAC_READ_SEARCH,
        "open /proc/<pid>/environ, mode 0400 and owned by the workload's uid",
    ),
    (
        Capability::CAP_SETUID,
        "take the workload's uid in the helper",
    ),
    (
        Capability::CAP_SETGID,
        "take the workload's gid and supplementary groups in the helper",
    ),
    (
        Capability::CAP_SETPCAP,
        "empty the helper's capability bounding set",
    ),
];

/// The required capabilities missing from this process's effective set.
pub fn missing_capabilities() -> std::io::Result<Vec<Capability>> {
    let effective = caps::read(None, caps::CapSet::Effective)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(REQUIRED_CAPABILITIES
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| !effective.contains(c))
        .collect())
}

/// One feature and the kernel that brought it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub since: &'static str,
}

pub const OPENAT2: Feature = Feature {
    name: "openat2 (RESOLVE_IN_ROOT)",
    since: "5.6",
};
pub const PIDFD_OPEN: Feature = Feature {
    name: "pidfd_open",
    since: "5.3",
};
pub const PIDFD_SETNS: Feature = Feature {
    name: "setns through a pidfd",
    since: "5.8",
};
pub const OPEN_TREE: Feature = Feature {
    name: "open_tree (detached mount copies)",
    since: "5.2",
};
pub const MOUNT_SETATTR: Feature = Feature {
    name: "mount_setattr (recursive read-only, nodev)",
    since: "5.12",
};
pub const SECCOMP: Feature = Feature {
    name: "seccomp filters with SECCOMP_RET_KILL_PROCESS",
    since: "4.14",
};

/// The newest of [`Feature::since`]: the kernel floor.
pub const FLOOR: &str = "5.12";

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("this kernel lacks {}: the scanner needs Linux {} or newer (this one: {kernel}; {cause})", feature.name, feature.since)]
    Missing {
        feature: Feature,
        kernel: String,
        cause: std::io::Error,
    },
    #[error("cannot use {} ({cause}): the scanner needs CAP_SYS_ADMIN", feature.name)]
    NotPermitted {
        feature: Feature,
        cause: std::io::Error,
    },
}

fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

fn classify(feature: Feature, cause: std::io::Error) -> ProbeError {
    if cause.kind() == std::io::ErrorKind::PermissionDenied {
        ProbeError::NotPermitted { feature, cause }
    } else {
        ProbeError::Missing {
            feature,
            kernel: kernel_release(),
            cause,
        }
    }
}

fn check<T>(feature: Feature, r: rustix::io::Result<T>) -> Result<T, ProbeError> {
    r.map_err(|e| classify(feature, e.into()))
}

/// Try each feature once (a few system calls, no container touched).
pub fn probe() -> Result<(), ProbeError> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
    use rustix::mount::{open_tree, OpenTreeFlags};

    check(
        OPENAT2,
        openat2(
            CWD,
            "/",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ),
    )?;
    let me = rustix::process::getpid();
    let pidfd: OwnedFd = check(
        PIDFD_OPEN,
        rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()),
    )?;
    drop(pidfd);
    let tree = check(
        OPEN_TREE,
        open_tree(
            CWD,
            "/proc",
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        ),
    )?;
    // mount_setattr implies pidfd setns (5.8 < 5.12): one probe covers both.
    crate::sandbox::restrict_mounts(&tree).map_err(|cause| classify(MOUNT_SETATTR, cause))?;
    seccomp_kill_process_available().map_err(|cause| classify(SECCOMP, cause))?;
    Ok(())
}

#[allow(unsafe_code)] // the seccomp(2) system call's GET_ACTION_AVAIL query
fn seccomp_kill_process_available() -> std::io::Result<()> {
    let action: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from the pointer, which points to a live
    // local for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_name_the_feature_and_the_kernel() {
        let e = ProbeError::Missing {
            feature: MOUNT_SETATTR,
            kernel: "5.4.0".into(),
            cause: std::io::Error::from_raw_os_error(38),
        };
        let text = e.to_string();
        assert!(text.contains("mount_setattr"), "{text}");
        assert!(text.contains("Linux 5.12"), "{text}");
        assert!(text.contains("5.4.0"), "{text}");
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn this_kernel_passes_as_root() {
        if !nix::unistd::geteuid().is_root() {
            // The open_tree probe needs CAP_SYS_ADMIN: as a user, it must say so.
            assert!(matches!(probe(), Err(ProbeError::NotPermitted { .. })));
            return;
        }
        probe().unwrap();
    }
}
