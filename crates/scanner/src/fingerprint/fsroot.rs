//! Bounded, confined reads of a container's files.
//!
//! Every file a fingerprint reads comes from the container image, so it is hostile: it may be
//! a symlink to a host path, a FIFO that never answers, `/dev/zero`, or a 1 GiB file. A [`Root`]
//! resolves paths with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so absolute symlinks
//! and `..` stay inside the root, and caps every read. A file is first opened `O_PATH` (which
//! runs no driver's `open` and wakes no FIFO writer) and checked to be a regular file; only
//! then is it opened for reading, and the descriptor must name the same inode. In the sandbox
//! the root is a `nodev` copy of the container's tree, so a device swapped in between the two
//! opens still cannot be opened (see [`crate::sandbox`]); tests point the root at a directory.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};

/// Longest path accepted from container data (argv, environment, manifests).
const MAX_PATH_LEN: usize = 4096;
/// Most directory entries [`Root::list_dir`] returns.
pub const MAX_DIR_ENTRIES: usize = 4096;

/// A directory that every lookup is confined to.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl Root {
    /// Open `path` (normally `/`) as the confinement root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let dir = openat2(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::empty(),
        )?;
        Ok(Root { dir })
    }

    /// `flags` as given (openat2 refuses unknown combinations, e.g. `O_PATH|O_NOCTTY`).
    fn open_raw(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        if path.len() > MAX_PATH_LEN || path.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path too long or has NUL",
            ));
        }
        let fd = openat2(
            &self.dir,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve_flags(),
        )?;
        Ok(fd)
    }

    /// The inode at `path`, without opening it: `O_PATH` runs no driver code and does not
    /// count as a FIFO reader.
    fn inspect(&self, path: &str) -> io::Result<(OwnedFd, rustix::fs::Stat)> {
        let fd = self.open_raw(path, OFlags::PATH)?;
        let stat = rustix::fs::fstat(&fd)?;
        Ok((fd, stat))
    }

    /// Open a regular file for reading. FIFOs, devices, sockets and directories are refused
    /// by their type before any real `open` (see the module documentation).
    pub fn open_file(&self, path: &str) -> io::Result<File> {
        let (_probe, before) = self.inspect(path)?;
        if !is_regular(&before) {
            return Err(not_regular());
        }
        // Non-blocking in case a FIFO was swapped in since: the check below then refuses it.
        let fd = self.open_raw(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?;
        let after = rustix::fs::fstat(&fd)?;
        if !is_regular(&after) || (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file replaced while being opened",
            ));
        }
        // Back to blocking mode: regular files never block, and readers expect it.
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
        Ok(File::from(fd))
    }

    /// Read at most `max` bytes of a regular file; a longer file is an error (a truncated
    /// read could silently change the meaning of what we parse).
    pub fn read_bounded(&self, path: &str, max: u64) -> io::Result<Vec<u8>> {
        let file = self.open_file(path)?;
        let mut buf = Vec::new();
        file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
        if buf.len() as u64 > max {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("{path} is larger than {max} bytes"),
            ));
        }
        Ok(buf)
    }

    /// Like [`Root::read_bounded`], as text (invalid UTF-8 replaced).
    pub fn read_string_bounded(&self, path: &str, max: u64) -> io::Result<String> {
        let bytes = self.read_bounded(path, max)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// True if `path` names a regular file inside the root (nothing is opened for reading).
    pub fn is_file(&self, path: &str) -> bool {
        self.inspect(path).is_ok_and(|(_, st)| is_regular(&st))
    }

    /// True if `path` names a directory inside the root.
    pub fn is_dir(&self, path: &str) -> bool {
        self.open_raw(path, OFlags::RDONLY | OFlags::DIRECTORY)
            .is_ok()
    }

    /// Names of the entries of a directory (not `.`/`..`), at most [`MAX_DIR_ENTRIES`].
    pub fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let fd = self.open_raw(path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        // `Dir::new` takes the descriptor; `read_from` would reopen it with openat, which the
        // sandbox's seccomp filter forbids.
        let mut dir = rustix::fs::Dir::new(fd)?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy();
            if name == "." || name == ".." {
                continue;
            }
            names.push(name.into_owned());
            if names.len() >= MAX_DIR_ENTRIES {
                break;
            }
        }
        names.sort();
        Ok(names)
    }
}

fn is_regular(stat: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

#[cfg(test)]
mod tests {
    use crate::fingerprint::testing::root_with;
    use std::os::unix::fs::symlink;
    use std::os::unix::fs::OpenOptionsExt as _;

    #[test]
    fn reads_inside_the_root() {
        let (_d, root) = root_with(&[("/etc/os-release", b"ID=rhel\n")]);
        assert_eq!(
            root.read_string_bounded("/etc/os-release", 100).unwrap(),
            "ID=rhel\n"
        );
        assert_eq!(
            root.read_string_bounded("etc/os-release", 100).unwrap(),
            "ID=rhel\n"
        );
        assert!(root.is_dir("/etc"));
        assert!(root.is_file("/etc/os-release"));
        assert_eq!(
            root.list_dir("/etc").unwrap(),
            vec!["os-release".to_owned()]
        );
    }

    #[test]
    fn absolute_symlinks_and_dotdot_stay_inside() {
        let (d, root) = root_with(&[("/etc/marker", b"inside\n")]);
        // A host file the root must never reach.
        let host = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host.path(), b"host secret").unwrap();
        symlink(host.path(), d.path().join("etc/escape")).unwrap();
        assert!(root.read_bounded("/etc/escape", 100).is_err());
        symlink("/etc/marker", d.path().join("abs")).unwrap();
        assert_eq!(root.read_string_bounded("/abs", 100).unwrap(), "inside\n");
        let host_rel = format!("../../../../../../..{}", host.path().display());
        assert!(root.read_bounded(&host_rel, 100).is_err());
        symlink("/proc/self/root/etc/passwd", d.path().join("magic")).unwrap();
        assert!(root.read_bounded("/magic", 1 << 20).is_err());
    }

    /// A FIFO with a writer blocked in `open(O_WRONLY)`: reading it through the root wakes
    /// nobody (an `O_RDONLY|O_NONBLOCK` open would have).
    #[test]
    fn a_fifo_writer_stays_blocked() {
        let (d, root) = root_with(&[]);
        let fifo = d.path().join("os-release");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w, path) = (std::sync::Arc::clone(&woken), fifo.clone());
        let writer = std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&path);
            w.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(f);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(root.read_bounded("/os-release", 100).is_err());
        assert!(!root.is_file("/os-release"));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !woken.load(std::sync::atomic::Ordering::SeqCst),
            "the writer was woken"
        );
        // Control: a real reader wakes it.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&fifo)
            .unwrap();
        writer.join().unwrap();
        assert!(woken.load(std::sync::atomic::Ordering::SeqCst));
        drop(reader);
    }

    #[test]
    fn refuses_fifos_devices_and_big_files() {
        let (d, root) = root_with(&[("/big", &[b'x'; 2048])]);
        nix::unistd::mkfifo(&d.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Refused by type before any open(2) that could block: the test hangs if not.
        assert!(root.read_bounded("/fifo", 100).is_err());
        assert!(root.read_bounded("/big", 1024).is_err());
        assert_eq!(root.read_bounded("/big", 2048).unwrap().len(), 2048);
        assert!(root.read_bounded("/", 10).is_err());
        assert!(root.read_bounded("/missing", 10).is_err());
        assert!(root.read_bounded("/a\0b", 10).is_err());
    }
}
