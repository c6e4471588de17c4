//! Go programs: the toolchain version from the build information the Go linker embeds.
//!
//! Same evidence as the reference (`debug/buildinfo.ReadFile` in `fpr_native_executable`):
//! the blob starting with `\xff Go buildinf:` in the `.go.buildinfo` section, or, when the
//! section headers were stripped, in the first 64 KiB of the first writable `PT_LOAD`. Both
//! layouts are read: Go ≥ 1.18 stores the version inline (length-prefixed, flag bit 2), older
//! toolchains store pointers to Go string headers. Only the version is used; the binary is
//! recognised whatever its name (a Go program called `node` is Go).

use super::elf::{open_executable, ElfBinary, ElfError, PF_W, PF_X};
use super::{Detection, Detector, Recognise, Root};
use crate::process::ProcessFacts;

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Magic, pointer size, flags, then two pointers or padding: always 32 bytes.
const HEADER_LEN: usize = 32;
/// The linker aligns the blob to 16 bytes.
const ALIGN: usize = 16;
/// Go reads at most this much of the data start when looking for the blob.
const SEARCH_LEN: u64 = 64 * 1024;
/// Real versions are like `go1.22.6` or `devel go1.23-abcdef Tue …`.
const MAX_VERSION_LEN: u64 = 1024;
const FLAG_BIG_ENDIAN: u8 = 1;
const FLAG_INLINE: u8 = 2;

/// In the registry: a Go program, whatever its name, told by its build info.
pub const DETECTOR: Detector = Detector {
    kind: "Golang",
    recognise: Recognise::Executable,
    detect,
};

pub fn detect(root: &Root, process: &ProcessFacts) -> Option<Detection> {
    let elf = open_executable(root, process)?;
    match version(&elf) {
        Ok(Some(version)) => Some(Detection {
            kind: "Golang".to_owned(),
            version,
            ..Detection::default()
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(error = %e, "no Go build info");
            None
        }
    }
}

/// The Go version of `elf`, `None` if it is not a Go program (or carries no build info).
pub fn version(elf: &ElfBinary) -> Result<Option<String>, ElfError> {
    let Some(data) = data_start(elf)? else {
        return Ok(None);
    };
    let Some(blob) = find_blob(&data) else {
        return Ok(None);
    };
    // find_blob returns at least HEADER_LEN bytes: magic (14), pointer size, flags, pointers.
    let (Some(&ptr_size), Some(&flags), Some(pointers), Some(after_header)) = (
        blob.get(14),
        blob.get(15),
        blob.get(16..HEADER_LEN),
        blob.get(HEADER_LEN..),
    ) else {
        return Ok(None);
    };
    let version = if flags & FLAG_INLINE != 0 {
        decode_varint_string(after_header).map(<[u8]>::to_vec)
    } else {
        read_pointed_string(
            elf,
            pointers,
            usize::from(ptr_size),
            flags & FLAG_BIG_ENDIAN != 0,
        )?
    };
    Ok(version
        .filter(|v| !v.is_empty() && v.iter().all(|b| b.is_ascii_graphic() || *b == b' '))
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Bytes where the blob may start: the `.go.buildinfo` section, or for binaries without
/// section headers the first writable, non-executable loadable segment (as `debug/buildinfo`).
fn data_start(elf: &ElfBinary) -> Result<Option<Vec<u8>>, ElfError> {
    let range = if let Some(section) = elf.section(".go.buildinfo") {
        section.file_range()
    } else if elf.sections().is_empty() {
        elf.segments()
            .iter()
            .find(|s| s.is_load() && s.flags & (PF_X | PF_W) == PF_W)
            .map(|s| s.offset..s.offset.saturating_add(s.filesz))
    } else {
        None
    };
    let Some(range) = range else {
        return Ok(None);
    };
    let end = range.end.min(range.start.saturating_add(SEARCH_LEN));
    elf.read_range(&(range.start..end), SEARCH_LEN, "Go build info")
        .map(Some)
}

/// The blob at the first 16-byte-aligned occurrence of the magic, with a full header.
pub(crate) fn find_blob(data: &[u8]) -> Option<&[u8]> {
    let mut from = 0usize;
    while let Some(found) = memchr::memmem::find(data.get(from..)?, MAGIC) {
        let at = from.checked_add(found)?;
        if at.is_multiple_of(ALIGN) {
            let blob = data.get(at..)?;
            return (blob.len() >= HEADER_LEN).then_some(blob);
        }
        from = at.checked_add(1)?;
    }
    None
}

/// A string prefixed by its length as an unsigned LEB128 varint (Go's `binary.Uvarint`).
pub(crate) fn decode_varint_string(data: &[u8]) -> Option<&[u8]> {
    let mut len: u64 = 0;
    for (i, byte) in data.iter().take(10).enumerate() {
        // i < 10, so the shift is at most 63 and the index + 1 cannot overflow.
        let shift = u32::try_from(i).ok()?.checked_mul(7)?;
        len |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        if byte & 0x80 == 0 {
            let start = i.checked_add(1)?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            return data.get(start..end);
        }
    }
    None
}

/// Old layout: `pointers` holds the address of a Go string header (data pointer, length).
fn read_pointed_string(
    elf: &ElfBinary,
    pointers: &[u8],
    ptr_size: usize,
    big_endian: bool,
) -> Result<Option<Vec<u8>>, ElfError> {
    if ptr_size != 4 && ptr_size != 8 {
        return Ok(None);
    }
    let word = |bytes: &[u8]| -> Option<u64> {
        let b = bytes.get(..ptr_size)?;
        let mut value = 0u64;
        let bytes: Box<dyn Iterator<Item = &u8>> = if big_endian {
            Box::new(b.iter())
        } else {
            Box::new(b.iter().rev())
        };
        for byte in bytes {
            value = value.checked_shl(8).unwrap_or(0) | u64::from(*byte);
        }
        Some(value)
    };
    let Some(header_addr) = word(pointers) else {
        return Ok(None);
    };
    // ptr_size is 4 or 8 (checked above).
    let header = elf.read_addr(header_addr, (ptr_size as u64).saturating_mul(2))?;
    let (Some(data), Some(len)) = (word(&header), header.get(ptr_size..).and_then(word)) else {
        return Ok(None);
    };
    if len == 0 || len > MAX_VERSION_LEN {
        return Ok(None);
    }
    elf.read_addr(data, len).map(Some)
}

#[cfg(test)]
mod tests {
    use super::super::elf::testelf::{build, write, TestSection};
    use super::*;
    use crate::fingerprint::testing::process;
    use std::process::Command;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    fn go_detection(version: &str) -> Option<Detection> {
        Some(Detection {
            kind: "Golang".into(),
            version: version.into(),
            ..Default::default()
        })
    }

    fn inline_blob(version: &str) -> Vec<u8> {
        let mut blob = MAGIC.to_vec();
        blob.push(8);
        blob.push(FLAG_INLINE);
        blob.resize(HEADER_LEN, 0);
        blob.push(version.len() as u8);
        blob.extend_from_slice(version.as_bytes());
        let modinfo = b"path example.com/app\n";
        blob.push(modinfo.len() as u8);
        blob.extend_from_slice(modinfo);
        blob
    }

    /// Old layout: blob at 0x5000 → string header in .data at 0x6000 → bytes at 0x7000.
    fn pointer_elf(is_64: bool, big_endian: bool, version: &str) -> Vec<u8> {
        let ptr = if is_64 { 8 } else { 4 };
        let put = |out: &mut Vec<u8>, v: u64| {
            if big_endian {
                out.extend_from_slice(&v.to_be_bytes()[8 - ptr..]);
            } else {
                out.extend_from_slice(&v.to_le_bytes()[..ptr]);
            }
        };
        let mut blob = MAGIC.to_vec();
        blob.push(ptr as u8);
        blob.push(if big_endian { FLAG_BIG_ENDIAN } else { 0 });
        put(&mut blob, 0x6000);
        put(&mut blob, 0x6000 + 2 * ptr as u64);
        blob.resize(HEADER_LEN, 0);
        let mut headers = Vec::new();
        put(&mut headers, 0x7000);
        put(&mut headers, version.len() as u64);
        put(&mut headers, 0x7000 + 64);
        put(&mut headers, 3);
        let mut strings = version.as_bytes().to_vec();
        strings.resize(64, 0);
        strings.extend_from_slice(b"mod");
        build(
            is_64,
            big_endian,
            &[
                TestSection::new(".go.buildinfo", 0x5000, true, blob),
                TestSection::new(".data", 0x6000, true, headers),
                TestSection::new(".rodata", 0x7000, false, strings),
            ],
            false,
        )
    }

    #[test]
    fn inline_format_go_1_18_and_later() {
        let (dir, root) = root();
        let elf = build(
            true,
            false,
            &[
                TestSection::new(".text", 0x1000, false, vec![0x90; 64]),
                TestSection::new(".go.buildinfo", 0x2000, true, inline_blob("go1.22.6")),
            ],
            false,
        );
        write(dir.path(), "/app/server", &elf);
        // Named like Node.js, still Go.
        let p = process("node", Some("/app/server"), &["node"]);
        assert_eq!(detect(&root, &p), go_detection("go1.22.6"));
    }

    #[test]
    fn pointer_format_before_go_1_18() {
        let (dir, root) = root();
        for (is_64, big) in [(true, false), (false, true), (false, false), (true, true)] {
            write(dir.path(), "/app/old", &pointer_elf(is_64, big, "go1.17"));
            let p = process("old", Some("/app/old"), &[]);
            assert_eq!(
                detect(&root, &p),
                go_detection("go1.17"),
                "64-bit {is_64}, big endian {big}"
            );
        }
    }

    #[test]
    fn without_section_headers_the_writable_segment_is_searched() {
        let (dir, root) = root();
        // The blob is not at the start of the segment, but 16-aligned; a misaligned copy of
        // the magic before it must be skipped.
        let mut data = vec![0u8; 48];
        data[3..3 + MAGIC.len()].copy_from_slice(MAGIC);
        data.extend_from_slice(&inline_blob("go1.24.1"));
        let elf = build(
            true,
            false,
            &[
                TestSection::new(".text", 0x1000, false, vec![0x90; 64]),
                TestSection::new(".data", 0x2000, true, data),
            ],
            true,
        );
        write(dir.path(), "/app/stripped", &elf);
        let opened = ElfBinary::open(&root, "/app/stripped").unwrap();
        assert!(opened.sections().is_empty());
        assert_eq!(version(&opened).unwrap().as_deref(), Some("go1.24.1"));
        // With section headers but no .go.buildinfo, the data is not searched.
        let elf = build(
            true,
            false,
            &[TestSection::new(
                ".data",
                0x2000,
                true,
                inline_blob("go1.24.1"),
            )],
            false,
        );
        write(dir.path(), "/app/c-program", &elf);
        let opened = ElfBinary::open(&root, "/app/c-program").unwrap();
        assert_eq!(version(&opened).unwrap(), None);
    }

    #[test]
    fn corrupt_build_info_is_not_go() {
        let (dir, root) = root();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bad-ptr-size", {
                let mut b = MAGIC.to_vec();
                b.extend_from_slice(&[3, 0]);
                b.resize(HEADER_LEN, 0xff);
                b
            }),
            ("dangling-pointers", {
                let mut b = MAGIC.to_vec();
                b.extend_from_slice(&[8, 0]);
                b.resize(HEADER_LEN, 0xff);
                b
            }),
            ("huge-varint", {
                let mut b = MAGIC.to_vec();
                b.extend_from_slice(&[8, FLAG_INLINE]);
                b.resize(HEADER_LEN, 0);
                b.extend_from_slice(&[0xff; 12]);
                b
            }),
            ("truncated-string", {
                let mut b = inline_blob("go1.22.6");
                b.truncate(HEADER_LEN + 4);
                b
            }),
            ("short-header", MAGIC.to_vec()),
            ("empty-version", {
                let mut b = MAGIC.to_vec();
                b.extend_from_slice(&[8, FLAG_INLINE]);
                b.resize(HEADER_LEN + 2, 0);
                b
            }),
            ("binary-version", inline_blob("go\x01\x02")),
        ];
        for (name, blob) in cases {
            let elf = build(
                true,
                false,
                &[TestSection::new(".go.buildinfo", 0x2000, true, blob)],
                false,
            );
            let path = format!("/bin/{name}");
            write(dir.path(), &path, &elf);
            assert_eq!(
                detect(&root, &process(name, Some(&path), &[])),
                None,
                "{name}"
            );
        }
        // Not ELF, missing, no exe and no argv: nothing, no panic.
        write(dir.path(), "/bin/script", b"#!/bin/sh\n");
        assert_eq!(
            detect(&root, &process("sh", Some("/bin/script"), &[])),
            None
        );
        assert_eq!(
            detect(&root, &process("x", Some("/bin/missing"), &[])),
            None
        );
        assert_eq!(detect(&root, &process("x", None, &[])), None);
    }

    #[test]
    fn argv0_is_used_when_exe_is_unknown() {
        let (dir, root) = root();
        let elf = build(
            true,
            false,
            &[TestSection::new(
                ".go.buildinfo",
                0x2000,
                true,
                inline_blob("go1.25.4"),
            )],
            false,
        );
        write(dir.path(), "/srv/app", &elf);
        let mut p = process("app", None, &["./app", "--flag"]);
        p.cwd = Some("/srv".into());
        assert_eq!(detect(&root, &p), go_detection("go1.25.4"));
        let p = process("app", Some("/gone/app"), &["/srv/app"]);
        assert_eq!(detect(&root, &p), go_detection("go1.25.4"));
    }

    /// A real Go program, built here by the host toolchain.
    #[test]
    fn real_go_binary() {
        let go_version = Command::new("go").args(["env", "GOVERSION"]).output();
        let go_version = match go_version {
            Ok(out) if out.status.success() => {
                String::from_utf8(out.stdout).unwrap().trim().to_owned()
            }
            _ => {
                panic!(
                    "go is required when CI=true (bash scripts/install-test-deps.sh installs it)"
                );
            }
        };
        let src = tempfile::tempdir().unwrap();
        std::fs::write(
            src.path().join("main.go"),
            "package main\n\nfunc main() {}\n",
        )
        .unwrap();
        let out = Command::new("go")
            .args(["build", "-o", "server", "main.go"])
            .current_dir(src.path())
            .env("GOCACHE", src.path().join("cache"))
            .env("GOFLAGS", "-buildvcs=false")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "go build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let binary = std::fs::read(src.path().join("server")).unwrap();

        let (dir, root) = root();
        write(dir.path(), "/usr/local/bin/node", &binary);
        let p = process("node", Some("/usr/local/bin/node"), &["node", "server.js"]);
        assert_eq!(detect(&root, &p), go_detection(&go_version));

        // The same binary with its section headers removed (as `sstrip` does).
        let mut stripped = binary.clone();
        stripped[40..48].copy_from_slice(&0u64.to_le_bytes()); // e_shoff
        stripped[60..64].copy_from_slice(&[0; 4]); // e_shnum, e_shstrndx
        write(dir.path(), "/app/stripped", &stripped);
        let opened = ElfBinary::open(&root, "/app/stripped").unwrap();
        assert!(opened.sections().is_empty());
        assert_eq!(version(&opened).unwrap(), Some(go_version));
    }
}
