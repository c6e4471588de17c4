//! A detached, read-only copy of a container's mount tree, and a `chroot` into it.
//!
//! `open_tree(OPEN_TREE_CLONE)` refuses mounts of another mount namespace (EINVAL through
//! `/proc/<pid>/root`, Linux 6.18), so the helper joins the target's mount namespace just long
//! enough to clone its `/` recursively, then returns to its own. The copy is detached (no
//! mount namespace shows it; it vanishes with its descriptor), so the container is left
//! exactly as it was. On the copy, recursively: read-only, `nosuid`, `noexec`, `nodev` (a
//! device node cannot even be opened, so no driver's `open` runs) and private propagation.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Clone the mount tree of the process behind `pidfd`, restrict it and make it this
/// process's root (and working directory). Needs CAP_SYS_ADMIN and CAP_SYS_CHROOT; the caller
/// must be single-threaded.
pub fn enter_copy_of(pidfd: &impl AsFd) -> Result<(), String> {
    use nix::sched::{setns, CloneFlags};
    use rustix::mount::{open_tree, OpenTreeFlags};

    let own = std::fs::File::open("/proc/self/ns/mnt")
        .map_err(|e| format!("open own mount namespace: {e}"))?;
    setns(pidfd, CloneFlags::CLONE_NEWNS).map_err(|e| format!("setns(mnt) by pidfd: {e}"))?;
    let cloned = open_tree(
        rustix::fs::CWD,
        "/",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    );
    // Back first, whatever open_tree said: nothing else runs in the container's namespace.
    setns(&own, CloneFlags::CLONE_NEWNS).map_err(|e| format!("setns back: {e}"))?;
    let tree = cloned.map_err(|e| format!("open_tree(clone of /): {e}"))?;
    restrict(&tree).map_err(|e| format!("mount_setattr(read-only, nodev, nosuid, noexec): {e}"))?;
    rustix::process::fchdir(&tree).map_err(|e| format!("fchdir(tree): {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot(tree): {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// `mount_setattr(RDONLY|NOSUID|NODEV|NOEXEC, private)` on every mount of the tree.
#[allow(unsafe_code)] // the mount_setattr(2) system call: no wrapper in nix or rustix
pub fn restrict(tree: &OwnedFd) -> std::io::Result<()> {
    let mut attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | libc::AT_RECURSIVE;
    // SAFETY: the path is a NUL-terminated empty string, `attr` is a live, initialised
    // `mount_attr` whose size is passed alongside; the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
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
    use std::os::unix::fs::FileTypeExt as _;

    /// The restricted copy refuses to open a device node and to write, while the original
    /// directory is unchanged (a clone of a directory of this test's own namespace).
    #[test]
    fn a_device_on_the_restricted_copy_cannot_be_opened() {
        testkit::rootfs::require_root("mount_setattr on a detached copy");
        let dir = tempfile::tempdir().unwrap();
        nix::sys::stat::mknod(
            &dir.path().join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let tree = rustix::mount::open_tree(
            rustix::fs::CWD,
            dir.path(),
            rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
                | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .unwrap();
        restrict(&tree).unwrap();
        let open =
            |name: &str, flags| rustix::fs::openat(&tree, name, flags, rustix::fs::Mode::empty());
        use rustix::fs::OFlags;
        // Before the restriction this would have opened /dev/null's driver.
        assert_eq!(
            open("null", OFlags::RDONLY).unwrap_err(),
            rustix::io::Errno::ACCESS
        );
        assert!(open("file", OFlags::RDONLY).is_ok());
        assert_eq!(
            open("file", OFlags::WRONLY).unwrap_err(),
            rustix::io::Errno::ROFS
        );
        // The original is untouched: still writable, the device still a device.
        std::fs::write(dir.path().join("file"), b"y").unwrap();
        let meta = std::fs::metadata(dir.path().join("null")).unwrap();
        assert!(meta.file_type().is_char_device());
    }
}
