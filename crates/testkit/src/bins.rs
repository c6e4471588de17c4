//! The project's binaries for tests of other crates (`system-test`, benchmarks), built when
//! needed and staged where an unprivileged process can execute them.
//!
//! Cargo hands a test only its own package's binaries (`CARGO_BIN_EXE_*`) and artifact
//! dependencies are unstable, so [`binary`] takes them from the test's own target directory and
//! profile, where `cargo test --workspace` has just built them. When one is missing or older
//! than the sources it is built from (e.g. `cargo test -p system-test` alone after an edit), it
//! is built once with `cargo build -p <package> --bin <name>` in that profile and target
//! directory. Not every time: cargo unifies features per invocation, so a `-p` build makes a
//! second variant of the dependency graph and would relink the binary back and forth with
//! `cargo test --workspace`.
//!
//! The checkout may sit under a directory only root may enter (a clone under `/root`, or in
//! `mktemp -d`): a process that drops to another uid could not execute a binary in its target
//! directory. [`binary`] therefore returns a copy in a world-readable directory under the
//! system temp dir, keyed by the build's size and mtime (copied once, reused by every test
//! process of that build).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};

/// A binary of the workspace: its package and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bin {
    pub package: &'static str,
    pub name: &'static str,
}

/// `runtime-extractor`: the privileged scanner (`scan`, `scanner`).
pub const SCANNER: Bin = Bin {
    package: "scanner",
    name: "runtime-extractor",
};
/// `runtime-extractor-serve`: the unprivileged HTTPS service.
pub const SERVICE: Bin = Bin {
    package: "service",
    name: "runtime-extractor-serve",
};
/// `workload-gatherer`: the cluster side.
pub const GATHERER: Bin = Bin {
    package: "gatherer",
    name: "workload-gatherer",
};

/// The crates (under `crates/`) whose sources make up the binaries.
const SOURCE_CRATES: &[&str] = &[
    "runtime-info",
    "cri-api",
    "scanner-proto",
    "scanner",
    "service",
    "gatherer",
];

/// Staged copies older than this are removed when a new one is staged.
const STALE_COPY_AGE: Duration = Duration::from_secs(24 * 3600);

/// The up-to-date binary, staged world-readable (see the module comment). Panics with the
/// reason when it cannot be had: the test cannot run without it.
pub fn binary(bin: Bin) -> &'static Path {
    static CACHE: OnceLock<Mutex<Vec<(Bin, &'static Path)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = cache.iter().find(|(b, _)| *b == bin) {
        return path;
    }
    let path = built(bin)
        .and_then(|built| stage(&built))
        .unwrap_or_else(|e| panic!("cannot provide {}: {e:#}", bin.name));
    // One per binary per test process.
    let path: &'static Path = Box::leak(path.into_boxed_path());
    cache.push((bin, path));
    path
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/<profile>` of the running test executable (`target/<profile>/deps/<test>-<hash>`).
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    let deps = exe.parent().context("test executable has no parent")?;
    let profile = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().context("deps/ has no parent")?
    } else {
        deps
    };
    Ok(profile.to_owned())
}

fn built(bin: Bin) -> anyhow::Result<PathBuf> {
    let profile = profile_dir()?;
    let sibling = profile.join(bin.name);
    let root = workspace_root();
    let newest_source = SOURCE_CRATES
        .iter()
        .map(|c| root.join("crates").join(c))
        .chain([root.join("Cargo.lock"), root.join("Cargo.toml")])
        .filter_map(|p| newest_mtime(&p))
        .max()
        .context("no sources found")?;
    let built = fs::metadata(&sibling).and_then(|m| m.modified()).ok();
    if built.is_some_and(|b| b >= newest_source) {
        return Ok(sibling);
    }
    {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "testkit: building {} (missing or older than its sources)",
            bin.name
        );
    }
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "-p", bin.package, "--bin", bin.name])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--target-dir")
        .arg(profile.parent().context("profile dir has no parent")?)
        .current_dir(&root)
        .stderr(Stdio::inherit());
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => bail!("unexpected target directory {}", profile.display()),
    }
    let out = cmd.output().context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build -p {} failed", bin.package);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin.name)
        .and_then(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no executable")
}

/// Newest modification time of a file or of anything under a directory.
pub fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = fs::metadata(path).ok()?;
    let own = meta.modified().ok();
    if !meta.is_dir() {
        return own;
    }
    fs::read_dir(path)
        .ok()?
        .flatten()
        .filter(|e| e.file_name() != "target")
        .filter_map(|e| newest_mtime(&e.path()))
        .chain(own)
        .max()
}

/// Copy `built` into `<tmp>/runtime-insights-bins/` (0755 all the way), once per build.
fn stage(built: &Path) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("runtime-insights-bins");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let meta = fs::metadata(built).with_context(|| format!("{}", built.display()))?;
    let stamp = meta
        .modified()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = built
        .file_name()
        .and_then(|n| n.to_str())
        .context("binary name")?;
    let staged = dir.join(format!("{name}-{stamp}-{}", meta.len()));
    if fs::metadata(&staged).is_ok_and(|m| m.len() == meta.len()) {
        return Ok(staged);
    }
    prune(&dir);
    // Copied under a unique name and renamed: concurrent test processes never see half a file.
    let partial = dir.join(format!(".{name}.{}.partial", std::process::id()));
    fs::copy(built, &partial)
        .with_context(|| format!("cannot copy {} to {}", built.display(), dir.display()))?;
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))?;
    fs::rename(&partial, &staged)?;
    Ok(staged)
}

fn prune(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_COPY_AGE);
        if old {
            let _ = fs::remove_file(e.path());
        }
    }
}
