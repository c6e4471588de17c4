//! Test containers without a container runtime: a root filesystem the test builds, entered
//! by a real process through real mount and PID namespaces (`unshare` + `pivot_root`).
//!
//! The host's `/usr`, `/lib*`, `/etc/alternatives` are bind-mounted read-only into the root
//! (unless the test put its own there), so real interpreters (Node, Python, a JDK, Go
//! binaries) run "inside" a root whose other files (`/etc/os-release`, `/app`, ...) are the
//! test's. Needs root; see [`require_root`].

use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Why namespace tests cannot run here, if they cannot.
pub fn namespaces_unavailable() -> Option<String> {
    if !nix_is_root() {
        return Some("not running as root".into());
    }
    for tool in ["unshare", "setpriv", "mount"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` not found"));
        }
    }
    None
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Find an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Fail the test, with the reason and what to install, when a prerequisite is missing. A test
/// never passes by not running: where it cannot run it fails (`bash
/// scripts/install-test-deps.sh` as root installs everything the suite needs).
pub fn require(what: &str, missing: Option<String>) {
    if let Some(why) = missing {
        panic!("{what}: prerequisite missing: {why} (run as root after `bash scripts/install-test-deps.sh`)");
    }
}

/// [`require`] for namespace tests (root, user and mount namespaces).
pub fn require_root(what: &str) {
    require(what, namespaces_unavailable());
}

/// A root filesystem under construction.
pub struct TestRoot {
    dir: tempfile::TempDir,
}

impl TestRoot {
    pub fn new() -> anyhow::Result<TestRoot> {
        let dir = tempfile::Builder::new()
            .prefix("ri-root-")
            .tempdir_in("/tmp")?;
        // Other users (the dropped sandbox, a non-root workload) must traverse it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(TestRoot { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Host path of a path inside the root.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    fn parent_dirs(&self, inside: &str) -> anyhow::Result<PathBuf> {
        let p = self.host_path(inside);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(p)
    }

    pub fn write(&self, inside: &str, content: impl AsRef<[u8]>) -> anyhow::Result<PathBuf> {
        self.write_mode(inside, content, 0o644)
    }

    pub fn write_mode(
        &self,
        inside: &str,
        content: impl AsRef<[u8]>,
        mode: u32,
    ) -> anyhow::Result<PathBuf> {
        let p = self.parent_dirs(inside)?;
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(p)
    }

    pub fn mkdir(&self, inside: &str) -> anyhow::Result<PathBuf> {
        let p = self.host_path(inside);
        std::fs::create_dir_all(&p)?;
        Ok(p)
    }

    pub fn symlink(&self, inside: &str, target: &str) -> anyhow::Result<()> {
        let p = self.parent_dirs(inside)?;
        symlink(target, &p).with_context(|| format!("symlink {}", p.display()))?;
        Ok(())
    }

    pub fn copy_from_host(&self, host: &Path, inside: &str) -> anyhow::Result<PathBuf> {
        let p = self.parent_dirs(inside)?;
        std::fs::copy(host, &p).with_context(|| format!("copy {}", host.display()))?;
        Ok(p)
    }

    pub fn mkfifo(&self, inside: &str) -> anyhow::Result<()> {
        let p = self.parent_dirs(inside)?;
        let status = Command::new("mkfifo").arg(&p).status()?;
        if !status.success() {
            bail!("mkfifo {} failed", p.display());
        }
        Ok(())
    }

    /// A sparse file of `size` bytes (costs no disk).
    pub fn sparse(&self, inside: &str, size: u64) -> anyhow::Result<()> {
        let p = self.parent_dirs(inside)?;
        std::fs::File::create(&p)?.set_len(size)?;
        Ok(())
    }

    pub fn os_release(&self, id: &str, version_id: &str) -> anyhow::Result<()> {
        self.write(
            "/etc/os-release",
            format!("NAME=\"Test\"\nID={id}\nVERSION_ID=\"{version_id}\"\n"),
        )?;
        Ok(())
    }
}

/// How to run a process in a [`TestRoot`].
#[derive(Debug, Clone, Default)]
pub struct ContainOpts {
    /// Run as this uid/gid (default: root).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub env: Vec<(String, String)>,
    /// Working directory inside the root.
    pub cwd: Option<String>,
    /// The command line to wait for (default: the argv given), for `exec -a` tricks.
    pub expect_argv: Option<Vec<String>>,
}

/// A process running in its own mount and PID namespaces, rooted in a [`TestRoot`].
/// Dropping it kills the namespace (the workload is PID 1 there).
pub struct Contained {
    unshare: Child,
    /// Host PID of the workload.
    pub pid: u32,
}

const ENTER: &str = r#"
set -e
P="$PATH"; PATH=/usr/sbin:/usr/bin:/sbin:/bin
R="$1"; C="$2"; U="$3"; G="$4"; shift 4
mount --bind "$R" "$R"
for d in /usr /lib /lib64 /lib32 /bin /sbin /etc/alternatives; do
  [ -e "$d" ] || continue
  if [ -L "$d" ]; then
    [ -e "$R$d" ] || [ -L "$R$d" ] || ln -s "$(readlink "$d")" "$R$d"
  elif [ ! -e "$R$d" ] || [ -z "$(ls -A "$R$d" 2>/dev/null)" ]; then
    mkdir -p "$R$d"; mount --rbind "$d" "$R$d"; mount -o remount,bind,ro "$R$d"
  else
    # The test put its own files here (e.g. /usr/local/bin): add the host's other entries.
    for e in "$d"/*; do
      n="$R$e"
      [ -e "$n" ] || [ -L "$n" ] && continue
      if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$n"; continue; fi
      if [ -d "$e" ]; then mkdir -p "$n"; else touch "$n"; fi
      mount --rbind "$e" "$n"; mount -o remount,bind,ro "$n"
    done
  fi
done
mkdir -p "$R/proc" "$R/tmp" "$R/dev" "$R/.oldroot"
chmod 1777 "$R/tmp"
mount -t proc proc "$R/proc"
[ -e "$R/dev/null" ] || { touch "$R/dev/null"; mount --bind /dev/null "$R/dev/null"; }
cd "$R"
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot 2>/dev/null || true
cd "$C"
PATH="$P"
if [ -n "$U" ]; then exec setpriv --reuid="$U" --regid="$G" --clear-groups -- "$@"; fi
exec "$@"
"#;

impl Contained {
    /// Start `argv` in `root` and wait until it runs (its command line is the expected one).
    pub fn start(root: &TestRoot, opts: &ContainOpts, argv: &[&str]) -> anyhow::Result<Contained> {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child=SIGKILL",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            ENTER,
            "enter",
        ])
        .arg(root.path())
        .arg(opts.cwd.as_deref().unwrap_or("/"))
        .arg(opts.uid.map(|u| u.to_string()).unwrap_or_default())
        .arg(
            opts.gid
                .or(opts.uid)
                .map(|g| g.to_string())
                .unwrap_or_default(),
        )
        .args(argv)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
        let mut unshare = cmd.spawn().context("cannot run unshare")?;
        let expected: Vec<String> = opts
            .expect_argv
            .clone()
            .unwrap_or_else(|| argv.iter().map(|s| s.to_string()).collect());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = unshare.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = unshare.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                bail!("contained process exited early ({status}): {err}");
            }
            if let Some(pid) = child_of(unshare.id()) {
                if cmdline(pid).as_ref() == Some(&expected) {
                    return Ok(Contained { unshare, pid });
                }
            }
            if Instant::now() > deadline {
                let _ = unshare.kill();
                bail!("contained process did not start {expected:?} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        // The workload is PID 1 of its namespace: killing it ends the namespace. It must be
        // killed directly: once it dropped its uid (setpriv), the parent-death signal that
        // `unshare --kill-child` set is gone.
        for pid in [self.pid, self.unshare.id()] {
            if let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.unshare.wait();
    }
}

fn child_of(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}
