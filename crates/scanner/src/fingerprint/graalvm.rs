//! GraalVM native images, and native Quarkus applications built with them.
//!
//! Recognised like the reference (`fpr_native_executable`): an ELF executable with a `.svm_heap`
//! section is kind `GraalVM`. Quarkus is found from strings the build leaves in the image:
//! `__quarkus_analytics__quarkus.version=<version>` (Quarkus ≥ 3.15) gives the version, taken
//! whole up to the first non-printable byte (the reference cuts strings into 52-character chunks,
//! which truncates versions longer than 15 characters such as `3.15.3.redhat-00002`);
//! `quarkus.native` alone means Quarkus of an unknown version (Quarkus < 3.15).
//!
//! Unlike the reference, which reads the whole file, the search streams over the data sections
//! only (`.rodata`, `.data`, `.svm_heap`) with a fixed buffer and a total cap.
//!
//! Version of GraalVM itself: the reference reports none. SubstrateVM embeds its identity as a
//! C string `com.oracle.svm.core.VM=GraalVM <version> Java <feature> <config>` (older releases:
//! a tab instead of `=`, no `Java` part), exported as `__svm_version_info` (see GraalVM's
//! `VM.java`). When that string is found, its `<version>` (e.g. `23.1.4.0-Final` for Mandrel,
//! `24.1.1` for GraalVM CE) becomes `kindVersion`; otherwise `kindVersion` stays empty as in the
//! reference. The field is the same string field, so the wire format is unchanged; consumers
//! expecting the reference's exact output for native images will see this extra value.

use std::ops::ControlFlow;

use runtime_info::RuntimeComponent;

use super::elf::{open_executable, ElfBinary, ElfError, MAX_SCAN_BYTES};
use super::{Detection, Detector, Recognise, Root};
use crate::process::ProcessFacts;

const ANALYTICS: &[u8] = b"__quarkus_analytics__quarkus.version=";
const NATIVE: &[u8] = b"quarkus.native";
const VM_INFO: &[u8] = b"com.oracle.svm.core.VM";
/// Bytes kept after a match: plenty for a version.
const AFTER: usize = 128;
/// Sections searched, smallest first (the VM string is a C string outside the image heap).
const DATA_SECTIONS: &[&str] = &[".rodata", ".data", ".svm_heap"];

/// In the registry: a GraalVM native image, whatever its name, told by its `.svm_heap`.
pub const DETECTOR: Detector = Detector {
    kind: "GraalVM",
    recognise: Recognise::Executable,
    detect,
};

pub fn detect(root: &Root, process: &ProcessFacts) -> Option<Detection> {
    let elf = open_executable(root, process)?;
    elf.section(".svm_heap")?;
    let facts = match native_image_facts(&elf) {
        Ok(facts) => facts,
        Err(e) => {
            tracing::debug!(pid = process.pid, error = %e, "cannot search the native image");
            NativeImage::default()
        }
    };
    let runtimes = match facts.quarkus {
        Some(version) => vec![RuntimeComponent {
            name: "Quarkus".to_owned(),
            version: version.unwrap_or_default(),
        }],
        None => Vec::new(),
    };
    Some(Detection {
        kind: "GraalVM".to_owned(),
        version: facts.graalvm_version.unwrap_or_default(),
        implementer: String::new(),
        runtimes,
    })
}

/// What the strings of a native image tell.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NativeImage {
    /// `Some(None)`: Quarkus, version unknown.
    quarkus: Option<Option<String>>,
    graalvm_version: Option<String>,
}

pub(crate) fn native_image_facts(elf: &ElfBinary) -> Result<NativeImage, ElfError> {
    let ranges = elf.section_ranges(DATA_SECTIONS);
    let mut facts = NativeImage::default();
    let mut quarkus_version = None;
    elf.scan(
        &ranges,
        &[ANALYTICS, NATIVE, VM_INFO],
        AFTER,
        MAX_SCAN_BYTES,
        |hit| {
            let rest = hit.rest();
            match hit.needle {
                0 if quarkus_version.is_none() => quarkus_version = Some(printable_prefix(rest)),
                1 if facts.quarkus.is_none() => facts.quarkus = Some(None),
                2 if facts.graalvm_version.is_none() => {
                    facts.graalvm_version = graalvm_version(rest)
                }
                _ => {}
            }
            if quarkus_version.is_some() && facts.graalvm_version.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    if let Some(version) = quarkus_version {
        facts.quarkus = Some(Some(version).filter(|v| !v.is_empty()));
    }
    Ok(facts)
}

/// Printable ASCII up to the first other byte (space included, as a strings tool would),
/// trimmed.
fn printable_prefix(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|b| !(0x20..0x7f).contains(b))
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..end).unwrap_or_default())
        .trim()
        .to_owned()
}

/// `<sep>GraalVM <version> …` after `com.oracle.svm.core.VM` (`=`, or a tab in old releases).
fn graalvm_version(rest: &[u8]) -> Option<String> {
    let (sep, value) = rest.split_first()?;
    if *sep != b'=' && *sep != b'\t' {
        return None;
    }
    let value = printable_prefix(value);
    let version = value.strip_prefix("GraalVM ")?.split(' ').next()?;
    (!version.is_empty()).then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::elf::testelf::{build, write, TestSection};
    use super::*;

    fn native_image(rodata: &[u8], heap: &[u8]) -> Vec<u8> {
        build(
            true,
            false,
            &[
                TestSection::new(".text", 0x1000, false, vec![0x90; 256]),
                TestSection::new(".rodata", 0x10000, false, rodata.to_vec()),
                TestSection::new(".svm_heap", 0x20000, false, heap.to_vec()),
                TestSection::new(".data", 0x80000, true, vec![0; 64]),
            ],
            false,
        )
    }

    fn run(elf: &[u8]) -> Option<Detection> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "/work/application", elf);
        let root = Root::open(dir.path()).unwrap();
        let process = ProcessFacts {
            comm: "application".into(),
            exe: Some("/work/application".into()),
            argv: vec!["./application".into(), "-Dquarkus.http.host=0.0.0.0".into()],
            cwd: Some("/work".into()),
            ..Default::default()
        };
        detect(&root, &process)
    }

    fn heap_with(strings: &[&[u8]]) -> Vec<u8> {
        let mut heap = vec![0xAB; 5000];
        for s in strings {
            heap.extend_from_slice(&[0x01, 0x00, 0x00, 0x00]);
            heap.extend_from_slice(s);
            heap.extend_from_slice(&[0x00, 0x00, 0x07]);
            heap.extend(std::iter::repeat_n(0xCD, 3000));
        }
        heap
    }

    fn quarkus(version: &str) -> Vec<RuntimeComponent> {
        vec![RuntimeComponent {
            name: "Quarkus".into(),
            version: version.into(),
        }]
    }

    #[test]
    fn plain_native_image_is_graalvm_without_runtimes() {
        let d = run(&native_image(
            b"nothing here\0",
            &heap_with(&[b"hello world"]),
        ))
        .unwrap();
        assert_eq!(d.kind, "GraalVM");
        assert_eq!(d.version, "");
        assert!(d.runtimes.is_empty());
    }

    #[test]
    fn not_a_native_image() {
        let elf = build(
            true,
            false,
            &[TestSection::new(
                ".rodata",
                0x1000,
                false,
                ANALYTICS.to_vec(),
            )],
            false,
        );
        assert_eq!(run(&elf), None);
        assert_eq!(run(b"#!/bin/sh\nexec java -jar app.jar\n"), None);
        // No executable at all, and an empty argv.
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(detect(&root, &ProcessFacts::default()), None);
        let p = ProcessFacts {
            exe: Some("/work/application".into()),
            ..Default::default()
        };
        assert_eq!(detect(&root, &p), None);
    }

    #[test]
    fn quarkus_version_is_not_truncated() {
        let heap = heap_with(&[
            b"quarkus.native.builder-image",
            b"__quarkus_analytics__quarkus.version=3.15.3.redhat-00002",
        ]);
        let d = run(&native_image(b"\0", &heap)).unwrap();
        assert_eq!(d.kind, "GraalVM");
        assert_eq!(d.runtimes, quarkus("3.15.3.redhat-00002"));

        let heap = heap_with(&[b"__quarkus_analytics__quarkus.version=3.29.2"]);
        assert_eq!(
            run(&native_image(b"\0", &heap)).unwrap().runtimes,
            quarkus("3.29.2")
        );
    }

    #[test]
    fn old_quarkus_has_no_version() {
        let heap = heap_with(&[b"io.quarkus.runtime.quarkus.native.container-build"]);
        let d = run(&native_image(b"\0", &heap)).unwrap();
        assert_eq!(
            d.runtimes,
            vec![RuntimeComponent {
                name: "Quarkus".into(),
                version: String::new()
            }]
        );
    }

    #[test]
    fn graalvm_version_from_the_vm_identity_string() {
        let rodata = b"\0com.oracle.svm.core.VM.Java.Version=21.0.5\0com.oracle.svm.core.VM=GraalVM 23.1.4.0-Final Java 21 Mandrel\0";
        let d = run(&native_image(rodata, &heap_with(&[]))).unwrap();
        assert_eq!(d.version, "23.1.4.0-Final");
        assert!(d.runtimes.is_empty());
        let rodata = b"\0com.oracle.svm.core.VM\tGraalVM 20.3.0 CE\0";
        assert_eq!(
            run(&native_image(rodata, &heap_with(&[]))).unwrap().version,
            "20.3.0"
        );
        // The class name alone is no version.
        let rodata = b"\0com.oracle.svm.core.VM\0";
        assert_eq!(
            run(&native_image(rodata, &heap_with(&[]))).unwrap().version,
            ""
        );
    }

    #[test]
    fn strings_outside_the_data_sections_are_not_searched() {
        let elf = build(
            true,
            false,
            &[
                TestSection::new(".text", 0x1000, false, ANALYTICS.to_vec()),
                TestSection::new(".svm_heap", 0x20000, false, vec![0; 64]),
            ],
            false,
        );
        assert!(run(&elf).unwrap().runtimes.is_empty());
    }

    #[test]
    fn unit_parsers() {
        assert_eq!(printable_prefix(b"3.15.1\0rest"), "3.15.1");
        assert_eq!(printable_prefix(b"3.15.1\xc3x"), "3.15.1");
        assert_eq!(printable_prefix(b""), "");
        assert_eq!(
            graalvm_version(b"=GraalVM 24.1.1 Java 23 CE"),
            Some("24.1.1".into())
        );
        assert_eq!(graalvm_version(b".Java.Version=21"), None);
        assert_eq!(graalvm_version(b"=Something else"), None);
        assert_eq!(graalvm_version(b""), None);
    }
}
