//! Node.js, recognised by name and versioned from files, never by running `node --version`.
//!
//! The reference executes the container's `argv[0] --version` (as the container user, with
//! leftover capabilities). Here the version comes from, in order:
//! 1. `<prefix>/include/node/node_version.h` (shipped by the official images and packages),
//!    where `<prefix>` is the parent of the executable's directory;
//! 2. the `node.js/vX.Y.Z` string in the executable's `.rodata` (the whole file, bounded, when
//!    it has no section headers), found early in the section so the stream stops quickly;
//! 3. the same string in `libnode.so*` when a small executable links it (Debian's `nodejs`).
//!
//! The kind is `Node.js` even when no version is found, as a process called `node` is Node.js
//! for the reference too.

use std::ops::ControlFlow;

use super::elf::{
    executable_paths, find_needed_library, open_executable, ElfBinary, ElfError, MAX_SCAN_BYTES,
};
use super::paths::{dirname, file_name};
use super::{Detection, Detector, Recognise, Root};
use crate::process::ProcessFacts;

const MAX_HEADER: u64 = 64 * 1024;
const MARKER: &[u8] = b"node.js/v";
/// An executable this small is a launcher for `libnode.so` rather than all of Node.js.
const SMALL_EXECUTABLE: u64 = 16 << 20;

/// In the registry: Node.js, recognised by the name of its thread or executable.
pub const DETECTOR: Detector = Detector {
    kind: "Node.js",
    recognise: Recognise::Name(is_node),
    detect,
};

pub fn detect(root: &Root, process: &ProcessFacts) -> Option<Detection> {
    if !is_node(process) {
        return None;
    }
    Some(Detection {
        kind: "Node.js".to_owned(),
        version: version(root, process).unwrap_or_default(),
        ..Detection::default()
    })
}

fn is_node_name(name: &str) -> bool {
    name == "node" || name == "nodejs"
}

/// `node`/`nodejs` by comm or executable; Node 24+ renames its main thread `MainThread`, which
/// other programs use too, so that name needs a Node-like executable or `argv[0]` as well.
pub fn is_node(process: &ProcessFacts) -> bool {
    let exe = process.exe.as_deref().map(file_name);
    let argv0 = process.argv.first().map(|a| file_name(a));
    if is_node_name(&process.comm) || exe.is_some_and(is_node_name) {
        return true;
    }
    process.comm == "MainThread"
        && (exe.is_some_and(|e| e.starts_with("node")) || argv0.is_some_and(is_node_name))
}

fn version(root: &Root, process: &ProcessFacts) -> Option<String> {
    let exe = executable_paths(process)
        .into_iter()
        .find(|p| root.is_file(p))?;
    let prefix = dirname(&dirname(&exe));
    let header = format!(
        "{}/include/node/node_version.h",
        prefix.trim_end_matches('/')
    );
    if let Ok(text) = root.read_string_bounded(&header, MAX_HEADER) {
        if let Some(v) = version_from_header(&text) {
            return Some(v);
        }
    }
    let elf = open_executable(root, process)?;
    match version_from_binary(&elf) {
        Ok(Some(v)) => return Some(v),
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "cannot search the node executable"),
    }
    if elf.len() >= SMALL_EXECUTABLE {
        return None;
    }
    let lib = find_needed_library(root, &elf, |n| n.starts_with("libnode.so"))?;
    let lib = ElfBinary::open(root, &lib)
        .map_err(|e| tracing::debug!(error = %e, "cannot open libnode"))
        .ok()?;
    version_from_binary(&lib)
        .map_err(|e| tracing::debug!(error = %e, "cannot search libnode"))
        .ok()?
}

/// `#define NODE_MAJOR_VERSION 22` and its MINOR and PATCH siblings.
pub(crate) fn version_from_header(text: &str) -> Option<String> {
    let define = |name: &str| -> Option<u32> {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "#define" && words.next()? == name)
                .then(|| words.next()?.parse().ok())?
        })
    };
    Some(format!(
        "v{}.{}.{}",
        define("NODE_MAJOR_VERSION")?,
        define("NODE_MINOR_VERSION")?,
        define("NODE_PATCH_VERSION")?
    ))
}

pub(crate) fn version_from_binary(elf: &ElfBinary) -> Result<Option<String>, ElfError> {
    let mut ranges = elf.section_ranges(&[".rodata"]);
    if ranges.is_empty() {
        ranges.push(0..elf.len());
    }
    let mut found = None;
    elf.scan(&ranges, &[MARKER], 24, MAX_SCAN_BYTES, |hit| {
        found = parse_triple(hit.rest()).map(|v| format!("v{v}"));
        if found.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(found)
}

/// `X.Y.Z` at the start of `bytes`, not followed by another digit or dot-digit.
pub(crate) fn parse_triple(bytes: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    let mut rest = bytes;
    for i in 0..3 {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let (number, after) = rest.split_at_checked(digits)?;
        parts.push(std::str::from_utf8(number).ok()?);
        rest = after;
        if i < 2 {
            rest = rest.strip_prefix(b".")?;
        }
    }
    if rest.first().is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::super::elf::testelf::{build, dynamic_needing, write, TestSection};
    use super::*;
    use crate::fingerprint::testing::process;
    use std::process::Command;

    fn node(version: &str) -> Option<Detection> {
        Some(Detection {
            kind: "Node.js".into(),
            version: version.into(),
            ..Default::default()
        })
    }

    fn host_node() -> Option<(Vec<u8>, String)> {
        let out = Command::new("node").arg("--version").output().ok()?;
        let version = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        let path = std::fs::canonicalize(which("node")?).ok()?;
        Some((std::fs::read(path).ok()?, version))
    }

    fn which(name: &str) -> Option<std::path::PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.is_file())
    }

    #[test]
    fn real_node_binary_copied_into_a_root() {
        let Some((binary, expected)) = host_node() else {
            panic!("node is required when CI=true (bash scripts/install-test-deps.sh installs it)");
        };
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "/usr/local/bin/node", &binary);
        let root = Root::open(dir.path()).unwrap();
        let p = process("node", Some("/usr/local/bin/node"), &["node", "server.js"]);
        let started = std::time::Instant::now();
        assert_eq!(detect(&root, &p), node(&expected));
        eprintln!("node version from the binary in {:?}", started.elapsed());
        // Node 24+: comm is MainThread.
        let p = process(
            "MainThread",
            Some("/usr/local/bin/node"),
            &["node", "server.js"],
        );
        assert_eq!(detect(&root, &p), node(&expected));
    }

    #[test]
    fn header_wins_and_is_read_without_touching_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("executed");
        // A shell script posing as node: it would leave a marker if anything ran it.
        let script = format!("#!/bin/sh\ntouch {}\necho v99.0.0\n", marker.display());
        write(dir.path(), "/usr/local/bin/node", script.as_bytes());
        let root = Root::open(dir.path()).unwrap();
        let p = process("node", Some("/usr/local/bin/node"), &["node", "index.js"]);
        assert_eq!(detect(&root, &p), node(""));
        write(
            dir.path(),
            "/usr/local/include/node/node_version.h",
            b"#ifndef SRC_NODE_VERSION_H_\n#define NODE_MAJOR_VERSION 22\n#define NODE_MINOR_VERSION 6\n#define NODE_PATCH_VERSION 0\n#define NODE_VERSION_IS_LTS 0\n",
        );
        assert_eq!(detect(&root, &p), node("v22.6.0"));
        assert!(!marker.exists(), "the fake node was executed");
        // The host's real header, if there is one, parses to the host's version.
        if let (Ok(text), Some((_, expected))) = (
            std::fs::read_to_string("/usr/include/node/node_version.h"),
            host_node(),
        ) {
            assert_eq!(version_from_header(&text), Some(expected));
        }
    }

    #[test]
    fn version_in_a_small_launcher_or_libnode() {
        let dir = tempfile::tempdir().unwrap();
        let mut rodata = b"\0\0https://nodejs.org/\0node.js/v1\0".to_vec();
        rodata.extend_from_slice(b"node.js/v18.19.1\0node.js/v0.0.1\0");
        let lib = build(
            true,
            false,
            &[TestSection::new(".rodata", 0x1000, false, rodata)],
            false,
        );
        write(dir.path(), "/usr/lib/x86_64-linux-gnu/libnode.so.109", &lib);
        // The launcher needs libnode.so.109 through its dynamic section.
        let (dynamic, dynstr) = dynamic_needing("libnode.so.109");
        let launcher = build(
            true,
            false,
            &[
                TestSection::new(".rodata", 0x1000, false, b"\0no version here\0".to_vec()),
                TestSection::new(".dynamic", 0x2000, true, dynamic),
                TestSection::new(".dynstr", 0x3000, false, dynstr),
            ],
            false,
        );
        write(dir.path(), "/usr/bin/nodejs", &launcher);
        let root = Root::open(dir.path()).unwrap();
        let p = process("nodejs", Some("/usr/bin/nodejs"), &["nodejs"]);
        assert_eq!(detect(&root, &p), node("v18.19.1"));
    }

    #[test]
    fn recognition() {
        assert!(is_node(&process("node", None, &[])));
        assert!(is_node(&process(
            "npm",
            Some("/usr/local/bin/node"),
            &["npm"]
        )));
        assert!(is_node(&process(
            "MainThread",
            Some("/usr/local/bin/node"),
            &[]
        )));
        assert!(is_node(&process("MainThread", None, &["node", "x.js"])));
        assert!(!is_node(&process(
            "MainThread",
            Some("/usr/lib/firefox/firefox"),
            &["firefox"]
        )));
        assert!(!is_node(&process("nodes", Some("/bin/nodes"), &[])));
        assert!(!is_node(&process(
            "python3",
            Some("/usr/bin/python3.11"),
            &["python3"]
        )));
        // Empty argv and no exe: recognised by comm, no version, no panic.
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut p = process("node", None, &[]);
        p.cwd = None;
        assert_eq!(detect(&root, &p), node(""));
        assert_eq!(detect(&root, &process("bash", None, &[])), None);
    }

    #[test]
    fn triples() {
        assert_eq!(parse_triple(b"20.20.2\0"), Some("20.20.2".into()));
        assert_eq!(parse_triple(b"22.6.0 rest"), Some("22.6.0".into()));
        assert_eq!(parse_triple(b"1\0"), None);
        assert_eq!(parse_triple(b"1.2\0"), None);
        assert_eq!(parse_triple(b"1.2.\0"), None);
        assert_eq!(parse_triple(b"123456.1.1"), None);
        assert_eq!(parse_triple(b""), None);
    }
}
