//! Python, recognised by name and versioned from files, never by running `python --version`.
//!
//! The reference runs `argv[0] --version` and so reports nothing for Python 2 (which prints
//! on stderr) and misses `python3.11`-style names. Here a process is Python when its comm or
//! executable is named `python`, `python3`, `python3.11`, `python2.7`, `python3.13t`…, and the
//! version `Python X.Y.Z` comes from, in order:
//! 1. the exported `Py_Version` constant (CPython ≥ 3.11) of the executable, or of the
//!    `libpythonX.Y*.so*` it links (found like the dynamic loader would, run paths included);
//! 2. the `PY_VERSION` string (`\0X.Y.Z\0`) in `.rodata` of that library or executable, for a
//!    major.minor known from the executable's or library's name or a sole `<prefix>/lib/pythonX.Y`
//!    directory; when the linker merged `PY_VERSION` into the tail of a longer string (pyenv:
//!    `…/versions/3.9.18`, `…/Python-3.9.18`) the same version after `/` or `-` is accepted.
//!
//! The kind is `Python` even when no version is found.

use std::ops::ControlFlow;

use super::elf::{find_needed_library, open_executable, ElfBinary, ElfError, MAX_SCAN_BYTES};
use super::paths::{dirname, file_name};
use super::{Detection, Detector, Recognise, Root};
use crate::process::ProcessFacts;

/// In the registry: CPython, recognised by the name of its thread or executable.
pub const DETECTOR: Detector = Detector {
    kind: "Python",
    recognise: Recognise::Name(is_python),
    detect,
};

/// `comm` or the executable is a CPython name (`python3`, `python3.11`, `python3.13t`, ...).
pub fn is_python(process: &ProcessFacts) -> bool {
    python_names(process).next().is_some()
}

fn python_names(process: &ProcessFacts) -> impl Iterator<Item = &str> {
    let exe_name = process.exe.as_deref().map(file_name);
    [Some(process.comm.as_str()), exe_name]
        .into_iter()
        .flatten()
        .filter(|n| is_python_name(n))
}

pub fn detect(root: &Root, process: &ProcessFacts) -> Option<Detection> {
    let names: Vec<&str> = python_names(process).collect();
    if names.is_empty() {
        return None;
    }
    let hint = names
        .iter()
        .find_map(|n| major_minor(n.strip_prefix("python")?));
    let version = version(root, process, hint)
        .map(|v| format!("Python {v}"))
        .unwrap_or_default();
    Some(Detection {
        kind: "Python".to_owned(),
        version,
        ..Detection::default()
    })
}

/// `python`, then optional `X` or `X.Y`, then optional ABI flags (`d`, `m`, `u`, `t`).
fn is_python_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("python") else {
        return false;
    };
    let rest = rest.trim_end_matches(['d', 'm', 'u', 't']);
    if rest.is_empty() {
        return true;
    }
    let mut parts = rest.split('.');
    let numeric = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let (major, minor, extra) = (parts.next(), parts.next(), parts.next());
    numeric(major) && (minor.is_none() || numeric(minor)) && extra.is_none()
}

/// `(3, 11)` from `3.11`, `3.11d`, `3.11.so.1.0`; `None` for `3` or `` .
fn major_minor(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

fn version(root: &Root, process: &ProcessFacts, hint: Option<(u32, u32)>) -> Option<String> {
    let exe = open_executable(root, process)?;
    if let Some(v) = py_version_symbol(&exe) {
        return Some(v);
    }
    let lib = find_needed_library(root, &exe, |n| n.starts_with("libpython")).and_then(|path| {
        match ElfBinary::open(root, &path) {
            Ok(lib) => Some(lib),
            Err(e) => {
                tracing::debug!(error = %e, "cannot open libpython");
                None
            }
        }
    });
    if let Some(lib) = &lib {
        if let Some(v) = py_version_symbol(lib) {
            return Some(v);
        }
    }
    let hint = hint
        .or_else(|| {
            let name = file_name(lib.as_ref()?.path());
            major_minor(name.strip_prefix("libpython")?)
        })
        .or_else(|| lib_dir_hint(root, exe.path()))?;
    for binary in lib.iter().chain(std::iter::once(&exe)) {
        match version_string(binary, hint) {
            Ok(Some(v)) => return Some(v),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot search for the Python version"),
        }
    }
    None
}

/// `Py_Version` (3.11+): `0xMMmmppLS`, level `A`/`B`/`C`/`F` for alpha, beta, rc, final.
pub(crate) fn py_version_symbol(elf: &ElfBinary) -> Option<String> {
    let (addr, size) = match elf.dynamic_symbol("Py_Version") {
        Ok(found) => found?,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read dynamic symbols");
            return None;
        }
    };
    let size = if size == 4 || size == 8 { size } else { 4 };
    let bytes = elf.read_addr(addr, size).ok()?;
    let hex = elf.word(&bytes, size as usize)? as u32;
    let (major, minor, micro) = (hex >> 24, (hex >> 16) & 0xff, (hex >> 8) & 0xff);
    let serial = hex & 0xf;
    let level = match (hex >> 4) & 0xf {
        0xa => format!("a{serial}"),
        0xb => format!("b{serial}"),
        0xc => format!("rc{serial}"),
        0xf => String::new(),
        _ => return None,
    };
    (major == 3).then(|| format!("{major}.{minor}.{micro}{level}"))
}

/// The only `pythonX.Y` directory in `<prefix>/lib`, if exactly one.
fn lib_dir_hint(root: &Root, exe: &str) -> Option<(u32, u32)> {
    let prefix = dirname(&dirname(exe));
    let entries = root
        .list_dir(&format!("{}/lib", prefix.trim_end_matches('/')))
        .ok()?;
    let mut found = entries
        .iter()
        .filter_map(|e| major_minor(e.strip_prefix("python")?))
        .filter(|(major, _)| *major == 2 || *major == 3);
    let first = found.next()?;
    found.all(|other| other == first).then_some(first)
}

/// `X.Y.Z` (with a pre-release suffix such as `rc1` or `+`) for the given major.minor in
/// `.rodata` (the whole file when there are no section headers): first a NUL-delimited one,
/// else one after `/` or `-` (tail-merged strings).
pub(crate) fn version_string(
    elf: &ElfBinary,
    (major, minor): (u32, u32),
) -> Result<Option<String>, ElfError> {
    let mut ranges = elf.section_ranges(&[".rodata"]);
    if ranges.is_empty() {
        ranges.push(0..elf.len());
    }
    let strict = format!("\0{major}.{minor}.");
    let slash = format!("/{major}.{minor}.");
    let dash = format!("-{major}.{minor}.");
    let mut fallback = None;
    let mut found = None;
    elf.scan(
        &ranges,
        &[strict.as_bytes(), slash.as_bytes(), dash.as_bytes()],
        24,
        MAX_SCAN_BYTES,
        |hit| {
            let Some(micro) = micro_and_suffix(hit.rest()) else {
                return ControlFlow::Continue(());
            };
            let version = format!("{major}.{minor}.{micro}");
            if hit.needle == 0 {
                found = Some(version);
                return ControlFlow::Break(());
            }
            fallback.get_or_insert(version);
            ControlFlow::Continue(())
        },
    )?;
    Ok(found.or(fallback))
}

/// `18\0`, `0rc1\0`, `2+\0`: the micro version and suffix, up to the terminating NUL.
fn micro_and_suffix(bytes: &[u8]) -> Option<&str> {
    let end = memchr::memchr(0, bytes)?;
    let text = std::str::from_utf8(bytes.get(..end)?).ok()?;
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let suffix = text.get(digits..)?;
    let suffix_ok = suffix.len() <= 8
        && suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'+');
    (digits > 0 && digits <= 3 && suffix_ok).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::super::elf::testelf::{build, dynamic_needing, write, TestSection};
    use super::*;
    use crate::fingerprint::testing::process;
    use std::path::Path;
    use std::process::Command;

    fn python(version: &str) -> Option<Detection> {
        Some(Detection {
            kind: "Python".into(),
            version: version.into(),
            ..Default::default()
        })
    }

    /// `sys.version`'s first word, asked of the host interpreter by the test (never by the code).
    fn host_version(interpreter: &Path) -> Option<String> {
        let out = Command::new(interpreter)
            .args(["-c", "import sys; print(sys.version.split()[0])"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Copy an interpreter and the libpython it links (same paths) into a fresh root.
    fn copy_interpreter(interpreter: &Path) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(interpreter).unwrap();
        let exe = real.to_str().unwrap().to_owned();
        write(dir.path(), &exe, &std::fs::read(&real).unwrap());
        let lib_dir = real.parent().unwrap().parent().unwrap().join("lib");
        if let Ok(entries) = std::fs::read_dir(&lib_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("libpython") && entry.path().is_file() {
                    let path = entry.path();
                    write(
                        dir.path(),
                        path.to_str().unwrap(),
                        &std::fs::read(&path).unwrap(),
                    );
                }
            }
        }
        (dir, exe)
    }

    fn interpreters() -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = ["/usr/bin/python3.11", "/usr/bin/python3"]
            .iter()
            .map(std::path::PathBuf::from)
            .filter(|p| p.is_file())
            .collect();
        if let Ok(versions) = std::fs::read_dir("/root/.pyenv/versions") {
            for v in versions.flatten() {
                let bin = v.path().join("bin");
                let Ok(entries) = std::fs::read_dir(&bin) else {
                    continue;
                };
                let mut names: Vec<_> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| is_python_name(n) && n.contains('.'))
                    .collect();
                names.sort();
                if let Some(n) = names.first() {
                    found.push(bin.join(n));
                }
            }
        }
        found
    }

    #[test]
    fn real_interpreters_copied_into_a_root() {
        let interpreters = interpreters();
        if interpreters.is_empty() {
            panic!(
                "python3 is required when CI=true (bash scripts/install-test-deps.sh installs it)"
            );
        }
        for interpreter in interpreters {
            let expected = host_version(&interpreter).unwrap();
            let (dir, exe) = copy_interpreter(&interpreter);
            let root = Root::open(dir.path()).unwrap();
            let comm = file_name(&exe).to_owned();
            let p = process(&comm, Some(&exe), &[&comm, "app.py"]);
            let started = std::time::Instant::now();
            let got = detect(&root, &p);
            eprintln!(
                "{} → {got:?} in {:?}",
                interpreter.display(),
                started.elapsed()
            );
            assert_eq!(
                got,
                python(&format!("Python {expected}")),
                "{}",
                interpreter.display()
            );
            // A renamed main process (gunicorn via its shebang): recognised by the executable.
            let p = process(
                "gunicorn",
                Some(&exe),
                &["/usr/bin/python3", "/usr/local/bin/gunicorn"],
            );
            assert_eq!(detect(&root, &p), python(&format!("Python {expected}")));
        }
    }

    #[test]
    fn static_interpreter_named_python_without_version_in_its_name() {
        let Some(interpreter) = ["/usr/bin/python3.11"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
        else {
            panic!(
                "python3 is required when CI=true (bash scripts/install-test-deps.sh installs it)"
            );
        };
        let expected = host_version(interpreter).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "/usr/local/bin/python",
            &std::fs::read(interpreter).unwrap(),
        );
        let root = Root::open(dir.path()).unwrap();
        let p = process("python", Some("/usr/local/bin/python"), &["python"]);
        assert_eq!(detect(&root, &p), python(&format!("Python {expected}")));
    }

    /// A libpython without `Py_Version` (Python < 3.11), hand-built, linked by a launcher.
    #[test]
    fn version_string_in_linked_library() {
        let dir = tempfile::tempdir().unwrap();
        let mut rodata = b"\0/usr/local/lib/python3.9\0\x003.2.0\0".to_vec();
        rodata.extend_from_slice(b"\x003.9.19\0%.80s (%.80s) %.80s\0");
        let lib = build(
            true,
            false,
            &[TestSection::new(".rodata", 0x1000, false, rodata)],
            false,
        );
        write(dir.path(), "/usr/local/lib/libpython3.9.so.1.0", &lib);
        let (dynamic, dynstr) = dynamic_needing("libpython3.9.so.1.0");
        let launcher = build(
            true,
            false,
            &[
                TestSection::new(".dynamic", 0x2000, true, dynamic),
                TestSection::new(".dynstr", 0x3000, false, dynstr),
            ],
            false,
        );
        write(dir.path(), "/usr/local/bin/python3.9", &launcher);
        let root = Root::open(dir.path()).unwrap();
        // The name says 3.9; the library says 3.9.19.
        let p = process("python3", Some("/usr/local/bin/python3.9"), &["python3"]);
        assert_eq!(detect(&root, &p), python("Python 3.9.19"));
        // Called `python`: the library's name gives 3.9.
        write(
            dir.path(),
            "/usr/local/bin/python",
            &std::fs::read(dir.path().join("usr/local/bin/python3.9")).unwrap(),
        );
        let p = process("python", Some("/usr/local/bin/python"), &["python"]);
        assert_eq!(detect(&root, &p), python("Python 3.9.19"));
    }

    #[test]
    fn python2_static_with_lib_dir_hint() {
        let dir = tempfile::tempdir().unwrap();
        let rodata = b"\0\x002.7.18\0\0".to_vec();
        let exe = build(
            true,
            false,
            &[TestSection::new(".rodata", 0x1000, false, rodata)],
            false,
        );
        write(dir.path(), "/usr/local/bin/python", &exe);
        std::fs::create_dir_all(dir.path().join("usr/local/lib/python2.7/site-packages")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let p = process("python", Some("/usr/local/bin/python"), &["python"]);
        assert_eq!(detect(&root, &p), python("Python 2.7.18"));
        // Two candidate directories: no hint, no guess.
        std::fs::create_dir_all(dir.path().join("usr/local/lib/python3.9")).unwrap();
        assert_eq!(detect(&root, &p), python(""));
    }

    #[test]
    fn fake_and_missing_interpreters() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("executed");
        let script = format!("#!/bin/sh\ntouch {}\necho Python 9.9.9\n", marker.display());
        write(dir.path(), "/usr/bin/python3", script.as_bytes());
        let root = Root::open(dir.path()).unwrap();
        let p = process("python3", Some("/usr/bin/python3"), &["python3"]);
        assert_eq!(detect(&root, &p), python(""));
        assert!(!marker.exists(), "the fake python was executed");
        let p = process("python3", None, &[]);
        assert_eq!(detect(&root, &p), python(""));
        assert_eq!(
            detect(&root, &process("java", Some("/usr/bin/java"), &["java"])),
            None
        );
    }

    #[test]
    fn names() {
        for n in [
            "python",
            "python3",
            "python3.11",
            "python2.7",
            "python3.13t",
            "python3.11d",
            "python3m",
        ] {
            assert!(is_python_name(n), "{n}");
        }
        for n in [
            "pythonista",
            "python-config",
            "python3.11-config",
            "python3.",
            "py",
            "ipython",
            "python3.11.2",
        ] {
            assert!(!is_python_name(n), "{n}");
        }
        assert_eq!(major_minor("3.11"), Some((3, 11)));
        assert_eq!(major_minor("3.13t"), Some((3, 13)));
        assert_eq!(major_minor("2.7.so.1.0"), Some((2, 7)));
        assert_eq!(major_minor("3"), None);
        assert_eq!(major_minor(".so"), None);
        assert_eq!(micro_and_suffix(b"18\0"), Some("18"));
        assert_eq!(micro_and_suffix(b"0rc1\0x"), Some("0rc1"));
        assert_eq!(micro_and_suffix(b"2+\0"), Some("2+"));
        assert_eq!(micro_and_suffix(b"2"), None);
        assert_eq!(micro_and_suffix(b"\0"), None);
        assert_eq!(micro_and_suffix(b"2 (main)\0"), None);
    }
}
