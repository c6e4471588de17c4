//! Entry points of the fuzz targets: every parser of container-, socket- or runtime-controlled
//! bytes, each fed arbitrary bytes. `fuzz/fuzz_targets/<name>.rs` calls [`run`] with its name
//! under libFuzzer (`cargo fuzz run <name>`), and `tests/fuzz_corpus.rs` replays every file of
//! `fuzz/corpus/<name>/` through the same function on stable Rust, so CI checks the corpus on
//! every run. An entry point must return for any input: a panic, a hang or an unbounded
//! allocation is a defect of the parser it calls.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use cri_api::{ContainerStatusResponse, ListContainersResponse, VersionResponse};
use prost::Message as _;

use crate::fingerprint::{elf::ElfBinary, go, graalvm, jar, java, node, os, python, Root};
use crate::process::ProcFiles;

/// The targets, by name (the file names under `fuzz/fuzz_targets/` and `fuzz/corpus/`).
pub const TARGETS: &[&str] = &[
    "elf",
    "go_buildinfo",
    "jar",
    "manifest",
    "os_release",
    "java_text",
    "proc_files",
    "scanner_frame",
    "cri_reply",
    "sandbox_report",
];

/// Feed `data` to target `name`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "elf" => elf(data),
        "go_buildinfo" => go_buildinfo(data),
        "jar" => jar(data),
        "manifest" => manifest(data),
        "os_release" => os_release(data),
        "java_text" => java_text(data),
        "proc_files" => proc_files(data),
        "scanner_frame" => scanner_frame(data),
        "cri_reply" => cri_reply(data),
        "sandbox_report" => sandbox_report(data),
        _ => return false,
    }
    true
}

/// An executable from a container, through every ELF-based detector: headers, sections,
/// the dynamic segment and symbols, the streaming search, and the Go, Node.js, Python and
/// GraalVM version readers. The bytes are written to a file of a private root first (the
/// detectors read through positioned reads on a file, as in production).
pub fn elf(data: &[u8]) {
    let Some((root, name)) = file_in_root(data) else {
        return;
    };
    let Ok(elf) = ElfBinary::open(&root, &name) else {
        return;
    };
    let _ = elf.sections().len();
    let _ = elf.dynamic();
    let _ = elf.dynamic_symbol("Py_Version");
    let _ = go::version(&elf);
    let _ = node::version_from_binary(&elf);
    let _ = python::py_version_symbol(&elf);
    let _ = python::version_string(&elf, (3, 11));
    let _ = graalvm::native_image_facts(&elf);
}

/// Go build info as found in `.go.buildinfo`: the aligned magic and the inline version string.
pub fn go_buildinfo(data: &[u8]) {
    if let Some(blob) = go::find_blob(data) {
        let _ = blob.get(32..).and_then(go::decode_varint_string);
    }
    let _ = go::decode_varint_string(data);
}

/// A jar (zip): central directory, zip64 records, entries read (stored and deflated, capped),
/// its manifest and nested jars.
pub fn jar(data: &[u8]) {
    let Ok(jar) = jar::Jar::from_bytes(data.to_vec(), "fuzz.jar") else {
        return;
    };
    let Ok(entries) = jar.scan(|_| true, 64) else {
        return;
    };
    for entry in &entries {
        let _ = jar.read(entry, 1 << 16);
        if entry.name.ends_with(".jar") {
            if let Ok(nested) = jar.nested(entry, 1 << 16) {
                let _ = nested.manifest();
            }
        }
    }
    let _ = jar.manifest();
}

/// A jar manifest's text.
pub fn manifest(data: &[u8]) {
    let m = jar::Manifest::parse(&String::from_utf8_lossy(data));
    let _ = m.get("Main-Class");
    let _ = m.get("Class-Path");
}

/// `/etc/os-release`.
pub fn os_release(data: &[u8]) {
    let _ = os::parse(&String::from_utf8_lossy(data));
}

/// The JDK's `release` file, a Java `@argfile`, and Node's `node_version.h`.
pub fn java_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = java::parse_release(&text);
    let _ = java::tokenize_argfile(&text);
    let _ = node::version_from_header(&text);
}

/// `/proc/<pid>/{stat,status,comm,cmdline,environ}`, as a process controls them. The input is
/// split at `\n--\n` into the five files, in that order.
pub fn proc_files(data: &[u8]) {
    let mut parts = split_at_marker(data, b"\n--\n");
    let mut next = || parts.next().unwrap_or_default().to_vec();
    let files = ProcFiles {
        stat: next(),
        status: next(),
        comm: next(),
        cmdline: next(),
        environ: Some(next()),
    };
    let _ = files.parse(1);
}

/// One frame of the scanner socket, as either side reads it.
pub fn scanner_frame(data: &[u8]) {
    let _ = scanner_proto::read_frame::<_, scanner_proto::ScanRequest>(
        &mut &data[..],
        scanner_proto::MAX_REQUEST_BYTES,
    );
    if let Ok(resp) = scanner_proto::read_frame::<_, scanner_proto::ScanResponse>(
        &mut &data[..],
        scanner_proto::MAX_RESPONSE_BYTES,
    ) {
        let _ = resp.node_runtime_info();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = scanner_proto::identity::parse_stat(text);
    }
}

/// A CRI runtime's replies (protobuf) and what discovery takes from them.
pub fn cri_reply(data: &[u8]) {
    if let Ok(list) = ListContainersResponse::decode(data) {
        for c in &list.containers {
            let _ = crate::discovery::cri::kubernetes_identity(c);
        }
    }
    if let Ok(status) = ContainerStatusResponse::decode(data) {
        for info in status.info.values() {
            let _ = crate::discovery::cri::pid_from_info(info);
        }
    }
    let _ = VersionResponse::decode(data);
}

/// The sandbox helper's answer, validated by the scanner as hostile input.
pub fn sandbox_report(data: &[u8]) {
    let _ = crate::sandbox::validate(data);
}

fn split_at_marker<'a>(data: &'a [u8], marker: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memmem::find(current, marker) {
            Some(at) => {
                rest = current.get(at.saturating_add(marker.len())..);
                current.get(..at)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `data` as `/bin/app` of a private root (one per process, rewritten each call).
fn file_in_root(data: &[u8]) -> Option<(Root, String)> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("runtime-insights-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(dir.join("bin")).ok()?;
            Some(dir)
        })
        .as_ref()?;
    let mut file = std::fs::File::create(dir.join("bin/app")).ok()?;
    file.write_all(data).ok()?;
    let root = Root::open(dir).ok()?;
    Some((root, "/bin/app".to_owned()))
}

#[cfg(test)]
mod tests {
    use crate::fingerprint::elf::testelf::{build, dynamic_needing, TestSection};
    use crate::fingerprint::jar::tests::build_jar;

    #[test]
    fn every_target_has_an_entry_point() {
        for name in super::TARGETS {
            assert!(super::run(name, b""), "{name}");
        }
        assert!(!super::run("nope", b""));
    }

    fn frame(json: &str) -> Vec<u8> {
        let mut out = u32::try_from(json.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out
    }

    fn go_blob(version: &str) -> Vec<u8> {
        let mut blob = b"\xff Go buildinf:".to_vec();
        blob.extend_from_slice(&[8, 2]);
        blob.resize(32, 0);
        blob.push(u8::try_from(version.len()).unwrap());
        blob.extend_from_slice(version.as_bytes());
        blob
    }

    /// The seed corpus, small valid and near-valid inputs for each target, built from the
    /// same fixtures the unit tests use. Regenerate with
    /// `cargo test -p scanner --lib fuzzing -- --ignored` (it rewrites `fuzz/corpus/<t>/seed-*`;
    /// inputs the fuzzer found are kept beside them).
    #[test]
    #[ignore = "writes fuzz/corpus/*/seed-*: run by hand to regenerate the seeds"]
    fn write_seed_corpus() {
        let (dynamic, dynstr) = dynamic_needing("libpython3.11.so.1.0");
        let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
            (
                "elf",
                vec![
                    build(
                        true,
                        false,
                        &[TestSection::new(".go.buildinfo", 0x2000, true, go_blob("go1.22.6"))],
                        false,
                    ),
                    build(
                        true,
                        false,
                        &[
                            TestSection::new(".rodata", 0x1000, false, b"node.js/v22.6.0\0GraalVM 23.1.2 Java 21\0".to_vec()),
                            TestSection::new(".svm_heap", 0x20000, false, vec![0; 64]),
                        ],
                        false,
                    ),
                    build(
                        true,
                        false,
                        &[
                            TestSection::new(".dynamic", 0x2000, true, dynamic),
                            TestSection::new(".dynstr", 0x3000, false, dynstr),
                            TestSection::new(".rodata", 0x4000, false, b"3.11.2 (main, Mar 13 2023)\0".to_vec()),
                        ],
                        false,
                    ),
                    build(false, true, &[TestSection::new(".go.buildinfo", 0x2000, true, go_blob("go1.19"))], true),
                ],
            ),
            ("go_buildinfo", vec![go_blob("go1.22.6"), go_blob("devel +abc")]),
            (
                "jar",
                vec![
                    build_jar(&[(
                        "META-INF/MANIFEST.MF",
                        b"Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader.launch.JarLauncher\nSpring-Boot-Version: 3.5.3\n",
                        true,
                    )]),
                    build_jar(&[
                        ("META-INF/MANIFEST.MF", b"Implementation-Version: 2.7.18\n", false),
                        ("BOOT-INF/lib/spring-boot-2.7.18.jar", &build_jar(&[("META-INF/MANIFEST.MF", b"Implementation-Version: 2.7.18\n", true)]), false),
                    ]),
                ],
            ),
            (
                "manifest",
                vec![b"Manifest-Version: 1.0\r\nMain-Class: a.B\r\nClass-Path: lib/a.jar\r\n  lib/b.jar\r\n\r\nName: x\r\nMain-Class: c.D\r\n".to_vec()],
            ),
            (
                "os_release",
                vec![
                    b"NAME=\"Red Hat Enterprise Linux\"\nID=\"rhel\"\nVERSION_ID=\"9.4\"\n".to_vec(),
                    b"# comment\nID='alpine'\nVERSION_ID=3.20.2\n=\n".to_vec(),
                ],
            ),
            (
                "java_text",
                vec![
                    b"JAVA_VERSION=\"17.0.13\"\nIMPLEMENTOR=\"Red Hat, Inc.\"\n".to_vec(),
                    b"-cp 'a b.jar':c.jar \"-Dx=y z\" # comment\n@more\n".to_vec(),
                    b"#define NODE_MAJOR_VERSION 22\n#define NODE_MINOR_VERSION 6\n#define NODE_PATCH_VERSION 0\n".to_vec(),
                ],
            ),
            (
                "proc_files",
                vec![b"42 (java) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10\n--\nName:\tjava\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n\n--\njava\n\n--\njava\0-jar\0app.jar\0\n--\nJAVA_HOME=/opt/jdk\0SECRET=x\0".to_vec()],
            ),
            (
                "scanner_frame",
                vec![
                    frame(r#"{"containerIds":["cri-o://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],"listOnly":true}"#),
                    frame(r#"{"containers":[{"namespace":"ns","pod":"p","container":"c","containerId":"containerd://ab","pid":7,"startTime":9,"info":{"os":"rhel","osVersion":"9.4","kind":"Java","kindVersion":"17.0.13","kindImplementer":"Red Hat, Inc.","runtimes":[{"name":"Quarkus","version":"3.8.1"}]}},{"namespace":"ns","pod":"p","container":"d","containerId":"containerd://cd","pid":8,"startTime":1,"error":{"kind":"timeout","detail":"analysis timed out"}}],"error":{"kind":"criUnavailable","detail":"x"}}"#),
                ],
            ),
            (
                "cri_reply",
                vec![{
                    use prost::Message as _;
                    let c = cri_api::Container {
                        id: "ab".repeat(32),
                        labels: [
                            ("io.kubernetes.pod.namespace".to_owned(), "ns".to_owned()),
                            ("io.kubernetes.pod.name".to_owned(), "p".to_owned()),
                            ("io.kubernetes.container.name".to_owned(), "c".to_owned()),
                        ]
                        .into(),
                        ..Default::default()
                    };
                    cri_api::ListContainersResponse { containers: vec![c] }.encode_to_vec()
                }, {
                    use prost::Message as _;
                    cri_api::ContainerStatusResponse {
                        info: [("info".to_owned(), r#"{"pid": 4242}"#.to_owned())].into(),
                        ..Default::default()
                    }
                    .encode_to_vec()
                }],
            ),
            (
                "sandbox_report",
                vec![serde_json::to_vec(&crate::sandbox::SandboxReport {
                    info: runtime_info::ContainerRuntimeInfo {
                        os: "debian".into(),
                        os_version: "12".into(),
                        kind: "Python".into(),
                        kind_version: "Python 3.11.2".into(),
                        ..Default::default()
                    },
                    privileges: crate::sandbox::Privileges {
                        uids: [65534; 3],
                        gids: [65534; 3],
                        no_new_privs: true,
                        seccomp: true,
                        ..Default::default()
                    },
                    candidates: 1,
                })
                .unwrap()],
            ),
        ];
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for (target, inputs) in seeds {
            assert!(super::TARGETS.contains(&target), "{target}");
            let dir = corpus.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, input) in inputs.iter().enumerate() {
                super::run(target, input);
                std::fs::write(dir.join(format!("seed-{i}")), input).unwrap();
            }
        }
    }
}
