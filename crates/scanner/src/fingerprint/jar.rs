//! A small, bounded reader for jar (zip) files from container images.
//!
//! Only the central directory is read, streamed through a fixed-size buffer; the caller says
//! which entries it wants (by exact name or a predicate) and only those are kept, so looking
//! for the manifest of a fat jar with 20 000 entries costs kilobytes of I/O and memory. Every
//! offset and size read from the file is checked against the file length before use, entry
//! data is decompressed under an explicit output cap (a zip bomb hits the cap and fails), and
//! nested jars (`BOOT-INF/lib/x.jar`) are read into a bounded in-memory buffer.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::Root;

/// Largest manifest we decompress.
pub const MAX_MANIFEST: u64 = 1024 * 1024;
/// Largest nested jar read into memory.
pub const MAX_NESTED_JAR: u64 = 32 * 1024 * 1024;
/// Largest central directory we are willing to stream through (about 800 000 entries).
pub const MAX_CENTRAL_DIRECTORY: u64 = 64 * 1024 * 1024;

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: u64 = 56;
const CDH_SIG: u32 = 0x0201_4b50;
const CDH_LEN: usize = 46;
const LFH_SIG: u32 = 0x0403_4b50;
const LFH_LEN: u64 = 30;
/// The EOCD ends the file, after a comment of at most 64 KiB.
const MAX_EOCD_SEARCH: u64 = 0xFFFF + EOCD_LEN;
/// First try a small tail (jars almost never carry a comment), then the full window.
const FIRST_EOCD_SEARCH: u64 = 4096;
/// Buffer used to stream the central directory.
const CD_BUFFER: usize = 8 * 1024;

const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;

/// Why a jar could not be read. `jar` names the file (`outer.jar!/BOOT-INF/lib/x.jar` for nested ones).
#[derive(Debug, thiserror::Error)]
pub enum JarError {
    #[error("{jar}: {cause}")]
    Io { jar: String, cause: io::Error },
    #[error("{jar}: not a zip file (no end of central directory record)")]
    NotZip { jar: String },
    #[error("{jar}: corrupt zip: {what}")]
    Corrupt { jar: String, what: &'static str },
    #[error("{jar}: entry {entry} is larger than {cap} bytes")]
    TooLarge {
        jar: String,
        entry: String,
        cap: u64,
    },
    #[error("{jar}: entry {entry} uses unsupported compression method {method} or encryption")]
    Unsupported {
        jar: String,
        entry: String,
        method: u16,
    },
    #[error("{jar}: entry {entry} fails its CRC-32 or size check")]
    Checksum { jar: String, entry: String },
}

/// Bytes behind a jar: a file in the container, or a nested jar held in memory.
#[derive(Debug)]
enum Source {
    File(File),
    Memory(Vec<u8>),
}

impl Source {
    fn len(&self) -> io::Result<u64> {
        match self {
            Source::File(f) => Ok(f.metadata()?.len()),
            Source::Memory(v) => Ok(v.len() as u64),
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            Source::File(f) => f.read_at(buf, offset),
            Source::Memory(v) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(v.len());
                let available = v.get(start..).unwrap_or_default();
                let n = buf.len().min(available.len());
                match (buf.get_mut(..n), available.get(..n)) {
                    (Some(dst), Some(src)) => dst.copy_from_slice(src),
                    _ => return Ok(0),
                }
                Ok(n)
            }
        }
    }
}

/// One central-directory entry the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    method: u16,
    flags: u16,
    crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    /// Offset of the local header, relative to the start of the zip data.
    local_header: u64,
}

/// An open jar. Cheap to create: only the end-of-central-directory record is read.
#[derive(Debug)]
pub struct Jar {
    src: Source,
    label: String,
    len: u64,
    /// Bytes before the zip data (a launch script prepended to a Spring Boot "fully executable"
    /// jar); entry offsets are relative to it, as in Java's own zip reader.
    base: u64,
    cd_start: u64,
    cd_end: u64,
    bytes_read: Cell<u64>,
}

/// `N` bytes at `at`. Callers read fixed-size records whose length they checked; a read past
/// the end gives zeros, which no signature or size check accepts.
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    at.checked_add(N)
        .and_then(|end| b.get(at..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes_at(b, at))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes_at(b, at))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes_at(b, at))
}

impl Jar {
    /// Open a jar inside the container root.
    pub fn open(root: &Root, path: &str) -> Result<Jar, JarError> {
        let file = root.open_file(path).map_err(|source| JarError::Io {
            jar: path.to_owned(),
            cause: source,
        })?;
        Jar::from_source(Source::File(file), path.to_owned())
    }

    /// A jar held in memory (a nested jar, or a test fixture).
    pub fn from_bytes(bytes: Vec<u8>, label: impl Into<String>) -> Result<Jar, JarError> {
        Jar::from_source(Source::Memory(bytes), label.into())
    }

    fn from_source(src: Source, label: String) -> Result<Jar, JarError> {
        let len = src.len().map_err(|source| JarError::Io {
            jar: label.clone(),
            cause: source,
        })?;
        let mut jar = Jar {
            src,
            label,
            len,
            base: 0,
            cd_start: 0,
            cd_end: 0,
            bytes_read: Cell::new(0),
        };
        jar.locate_central_directory()?;
        Ok(jar)
    }

    /// Bytes read from the underlying file or buffer so far (for tests and metrics).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.get()
    }

    /// Size of the central directory in bytes.
    pub fn central_directory_size(&self) -> u64 {
        self.cd_end.saturating_sub(self.cd_start)
    }

    fn corrupt(&self, what: &'static str) -> JarError {
        JarError::Corrupt {
            jar: self.label.clone(),
            what,
        }
    }

    fn io(&self, source: io::Error) -> JarError {
        JarError::Io {
            jar: self.label.clone(),
            cause: source,
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], mut offset: u64) -> Result<(), JarError> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = self.src.read_at(rest, offset).map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.corrupt("unexpected end of file"));
            }
            rest = rest.get_mut(n..).unwrap_or_default();
            offset = offset.saturating_add(n as u64);
            self.count_read(n);
        }
        Ok(())
    }

    fn count_read(&self, n: usize) {
        self.bytes_read
            .set(self.bytes_read.get().saturating_add(n as u64));
    }

    fn locate_central_directory(&mut self) -> Result<(), JarError> {
        if self.len < EOCD_LEN {
            return Err(JarError::NotZip {
                jar: self.label.clone(),
            });
        }
        let mut found = None;
        for window in [FIRST_EOCD_SEARCH, MAX_EOCD_SEARCH] {
            // `window` is at most MAX_EOCD_SEARCH and at least EOCD_LEN (checked above).
            let window = window.min(self.len);
            let start = self.len.saturating_sub(window);
            let mut tail = vec![0u8; usize::try_from(window).unwrap_or(0)];
            self.read_exact_at(&mut tail, start)?;
            // Last signature whose comment length fits in the file (as Go's archive/zip does).
            let eocd_len = EOCD_LEN as usize;
            for i in (0..=tail.len().saturating_sub(eocd_len)).rev() {
                if u32_at(&tail, i) != EOCD_SIG {
                    continue;
                }
                let comment = u64::from(u16_at(&tail, i.saturating_add(20)));
                let record_end = (i as u64).saturating_add(EOCD_LEN).saturating_add(comment);
                if record_end <= window {
                    if let Some(record) = tail.get(i..i.saturating_add(eocd_len)) {
                        found = Some((start.saturating_add(i as u64), record.to_vec()));
                        break;
                    }
                }
            }
            if found.is_some() || window == self.len {
                break;
            }
        }
        let Some((eocd_pos, eocd)) = found else {
            return Err(JarError::NotZip {
                jar: self.label.clone(),
            });
        };
        if u16_at(&eocd, 4) != 0 || u16_at(&eocd, 6) != 0 {
            return Err(self.corrupt("multi-disk archives are not supported"));
        }
        let mut entries = u64::from(u16_at(&eocd, 10));
        let mut cd_size = u64::from(u32_at(&eocd, 12));
        let mut cd_offset = u64::from(u32_at(&eocd, 16));
        // Where the central directory must end: at the (zip64) end record.
        let mut cd_end = eocd_pos;
        if entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
            if let Some((pos, z)) = self.read_zip64_end(eocd_pos)? {
                entries = u64_at(&z, 32);
                cd_size = u64_at(&z, 40);
                cd_offset = u64_at(&z, 48);
                cd_end = pos;
            }
        }
        if cd_size > MAX_CENTRAL_DIRECTORY {
            return Err(self.corrupt("central directory is too large"));
        }
        // Each entry takes at least 46 bytes: a count the size cannot hold is a lie.
        if entries.saturating_mul(CDH_LEN as u64) > cd_size {
            return Err(self.corrupt("entry count does not fit the central directory"));
        }
        let base = cd_end
            .checked_sub(cd_size)
            .and_then(|x| x.checked_sub(cd_offset))
            .ok_or_else(|| self.corrupt("central directory offset or size beyond the file"))?;
        // base + cd_offset + cd_size = cd_end, which is within the file: no overflow.
        self.base = base;
        self.cd_start = base.saturating_add(cd_offset);
        self.cd_end = self.cd_start.saturating_add(cd_size);
        Ok(())
    }

    /// The zip64 end record, if the locator right before the EOCD points at a valid one.
    fn read_zip64_end(&self, eocd_pos: u64) -> Result<Option<(u64, Vec<u8>)>, JarError> {
        let Some(loc_pos) = eocd_pos.checked_sub(ZIP64_LOCATOR_LEN) else {
            return Ok(None);
        };
        let mut loc = [0u8; ZIP64_LOCATOR_LEN as usize];
        self.read_exact_at(&mut loc, loc_pos)?;
        if u32_at(&loc, 0) != ZIP64_LOCATOR_SIG {
            // Plain zip whose counters merely hit the 16/32-bit maximum.
            return Ok(None);
        }
        let pos = u64_at(&loc, 8);
        if pos
            .checked_add(ZIP64_EOCD_LEN)
            .is_none_or(|end| end > loc_pos)
        {
            return Err(self.corrupt("zip64 end record offset beyond the file"));
        }
        let mut z = vec![0u8; ZIP64_EOCD_LEN as usize];
        self.read_exact_at(&mut z, pos)?;
        if u32_at(&z, 0) != ZIP64_EOCD_SIG {
            return Err(self.corrupt("bad zip64 end record signature"));
        }
        Ok(Some((pos, z)))
    }

    /// Stream through the central directory and keep the entries whose name `want` accepts,
    /// stopping once `max_kept` were found. Memory is one small buffer plus the kept entries.
    pub fn scan(
        &self,
        mut want: impl FnMut(&str) -> bool,
        max_kept: usize,
    ) -> Result<Vec<Entry>, JarError> {
        let mut kept = Vec::new();
        if max_kept == 0 {
            return Ok(kept);
        }
        let mut cd = CdStream::new(self);
        let mut header = [0u8; CDH_LEN];
        let mut name = Vec::new();
        let mut extra = Vec::new();
        while cd.remaining() > 0 {
            cd.read_exact(&mut header)?;
            if u32_at(&header, 0) != CDH_SIG {
                return Err(self.corrupt("bad central directory entry signature"));
            }
            let name_len = usize::from(u16_at(&header, 28));
            let extra_len = usize::from(u16_at(&header, 30));
            let comment_len = u64::from(u16_at(&header, 32));
            name.resize(name_len, 0);
            cd.read_exact(&mut name)?;
            let name_str = String::from_utf8_lossy(&name);
            if !want(&name_str) {
                cd.skip((extra_len as u64).saturating_add(comment_len))?;
                continue;
            }
            let mut entry = Entry {
                name: name_str.into_owned(),
                flags: u16_at(&header, 8),
                method: u16_at(&header, 10),
                crc32: u32_at(&header, 16),
                compressed_size: u64::from(u32_at(&header, 20)),
                uncompressed_size: u64::from(u32_at(&header, 24)),
                local_header: u64::from(u32_at(&header, 42)),
            };
            extra.resize(extra_len, 0);
            cd.read_exact(&mut extra)?;
            cd.skip(comment_len)?;
            apply_zip64_extra(&mut entry, &extra);
            kept.push(entry);
            if kept.len() >= max_kept {
                break;
            }
        }
        Ok(kept)
    }

    /// The first entry named exactly `name`.
    pub fn find(&self, name: &str) -> Result<Option<Entry>, JarError> {
        Ok(self.scan(|n| n == name, 1)?.pop())
    }

    /// Whether the jar has an entry named exactly `name` (nothing is decompressed).
    pub fn contains(&self, name: &str) -> Result<bool, JarError> {
        Ok(self.find(name)?.is_some())
    }

    /// Decompress one entry, failing cleanly if it would exceed `cap` bytes.
    pub fn read(&self, entry: &Entry, cap: u64) -> Result<Vec<u8>, JarError> {
        let too_large = || JarError::TooLarge {
            jar: self.label.clone(),
            entry: entry.name.clone(),
            cap,
        };
        if entry.flags & 1 != 0 || !matches!(entry.method, METHOD_STORED | METHOD_DEFLATED) {
            return Err(JarError::Unsupported {
                jar: self.label.clone(),
                entry: entry.name.clone(),
                method: entry.method,
            });
        }
        if entry.uncompressed_size > cap {
            return Err(too_large());
        }
        let lfh_pos = self
            .base
            .checked_add(entry.local_header)
            .filter(|p| {
                p.checked_add(LFH_LEN)
                    .is_some_and(|end| end <= self.cd_start)
            })
            .ok_or_else(|| self.corrupt("local header offset beyond the entries area"))?;
        let mut lfh = [0u8; LFH_LEN as usize];
        self.read_exact_at(&mut lfh, lfh_pos)?;
        if u32_at(&lfh, 0) != LFH_SIG {
            return Err(self.corrupt("bad local header signature"));
        }
        // lfh_pos + LFH_LEN <= cd_start (checked above) plus two u16: no overflow.
        let data_start = lfh_pos
            .saturating_add(LFH_LEN)
            .saturating_add(u64::from(u16_at(&lfh, 26)))
            .saturating_add(u64::from(u16_at(&lfh, 28)));
        let data_end = data_start
            .checked_add(entry.compressed_size)
            .filter(|end| *end <= self.cd_start)
            .ok_or_else(|| self.corrupt("entry data beyond the entries area"))?;
        let section = Section {
            jar: self,
            pos: data_start,
            end: data_end,
        };
        let mut out = Vec::new();
        let read = if entry.method == METHOD_STORED {
            section.take(cap.saturating_add(1)).read_to_end(&mut out)
        } else {
            flate2::read::DeflateDecoder::new(section)
                .take(cap.saturating_add(1))
                .read_to_end(&mut out)
        };
        match read {
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::InvalidInput
                    || e.kind() == io::ErrorKind::InvalidData =>
            {
                return Err(self.corrupt("invalid deflate data"))
            }
            Err(e) => return Err(self.io(e)),
        }
        if out.len() as u64 > cap {
            return Err(too_large());
        }
        let mut crc = flate2::Crc::new();
        crc.update(&out);
        if crc.sum() != entry.crc32 || out.len() as u64 != entry.uncompressed_size {
            return Err(JarError::Checksum {
                jar: self.label.clone(),
                entry: entry.name.clone(),
            });
        }
        Ok(out)
    }

    /// The main section of `META-INF/MANIFEST.MF`, or `None` when the jar has none.
    pub fn manifest(&self) -> Result<Option<Manifest>, JarError> {
        let Some(entry) = self.find("META-INF/MANIFEST.MF")? else {
            return Ok(None);
        };
        let bytes = self.read(&entry, MAX_MANIFEST)?;
        Ok(Some(Manifest::parse(&String::from_utf8_lossy(&bytes))))
    }

    /// Open a jar stored inside this one, held in memory (at most `cap` bytes).
    pub fn nested(&self, entry: &Entry, cap: u64) -> Result<Jar, JarError> {
        let bytes = self.read(entry, cap)?;
        Jar::from_bytes(bytes, format!("{}!/{}", self.label, entry.name))
    }
}

/// Zip64 extended information: 64-bit values for the fields saturated in the header, in order.
fn apply_zip64_extra(entry: &mut Entry, mut extra: &[u8]) {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0);
        let size = usize::from(u16_at(extra, 2));
        let Some(data) = extra.get(4..size.saturating_add(4)) else {
            return;
        };
        if id == 0x0001 {
            let mut fields = data.chunks_exact(8).map(|c| u64_at(c, 0));
            for field in [
                &mut entry.uncompressed_size,
                &mut entry.compressed_size,
                &mut entry.local_header,
            ] {
                if *field == 0xFFFF_FFFF {
                    match fields.next() {
                        Some(v) => *field = v,
                        None => return,
                    }
                }
            }
            return;
        }
        extra = extra.get(size.saturating_add(4)..).unwrap_or_default();
    }
}

/// Sequential reader over the central directory with a fixed buffer.
struct CdStream<'a> {
    jar: &'a Jar,
    /// File offset of the next byte not yet in `buf`.
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    filled: usize,
}

impl<'a> CdStream<'a> {
    fn new(jar: &'a Jar) -> Self {
        CdStream {
            jar,
            pos: jar.cd_start,
            buf: vec![0; CD_BUFFER],
            at: 0,
            filled: 0,
        }
    }

    /// Invariants: `pos <= cd_end`, `at <= filled <= buf.len()`.
    fn unread_in_file(&self) -> u64 {
        self.jar.cd_end.saturating_sub(self.pos)
    }

    fn buffered(&self) -> &[u8] {
        self.buf.get(self.at..self.filled).unwrap_or_default()
    }

    fn remaining(&self) -> u64 {
        self.unread_in_file()
            .saturating_add(self.buffered().len() as u64)
    }

    fn read_exact(&mut self, out: &mut [u8]) -> Result<(), JarError> {
        let mut out = out;
        while !out.is_empty() {
            if self.buffered().is_empty() {
                let n = usize::try_from(self.unread_in_file().min(CD_BUFFER as u64)).unwrap_or(0);
                let Some(chunk) = self.buf.get_mut(..n).filter(|c| !c.is_empty()) else {
                    return Err(self
                        .jar
                        .corrupt("central directory entry runs past its end"));
                };
                self.jar.read_exact_at(chunk, self.pos)?;
                self.pos = self.pos.saturating_add(n as u64);
                self.at = 0;
                self.filled = n;
            }
            let buffered = self.buffered();
            let n = out.len().min(buffered.len());
            let (dst, rest) = out.split_at_mut(n);
            if let Some(src) = buffered.get(..n) {
                dst.copy_from_slice(src);
            }
            self.at = self.at.saturating_add(n);
            out = rest;
        }
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<(), JarError> {
        let buffered = self.buffered().len() as u64;
        if n <= buffered {
            self.at = self
                .at
                .saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            return Ok(());
        }
        let rest = n.saturating_sub(buffered);
        self.at = self.filled;
        if rest > self.unread_in_file() {
            return Err(self
                .jar
                .corrupt("central directory entry runs past its end"));
        }
        self.pos = self.pos.saturating_add(rest);
        Ok(())
    }
}

/// `Read` over a byte range of the jar.
struct Section<'a> {
    jar: &'a Jar,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(0);
        let Some(buf) = buf.get_mut(..n).filter(|b| !b.is_empty()) else {
            return Ok(0);
        };
        let got = self.jar.src.read_at(buf, self.pos)?;
        self.pos = self.pos.saturating_add(got as u64);
        self.jar.count_read(got);
        Ok(got)
    }
}

/// The main section of a jar manifest, parsed like the reference implementation: CRLF → LF,
/// `key: value` split at the first `": "`, lines starting with a space continue the previous
/// value. Per-entry sections (after the first blank line) are ignored: their attributes
/// describe single entries and must not override the main ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    attributes: Vec<(String, String)>,
}

impl Manifest {
    pub fn parse(text: &str) -> Manifest {
        let text = text.replace("\r\n", "\n");
        let mut attributes: Vec<(String, String)> = Vec::new();
        for line in text.split('\n') {
            if let Some(rest) = line.strip_prefix(' ') {
                if let Some((_, value)) = attributes.last_mut() {
                    value.push_str(rest);
                }
            } else if line.trim().is_empty() {
                if !attributes.is_empty() {
                    break;
                }
            } else if let Some((key, value)) = line.split_once(": ") {
                attributes.push((key.trim().to_owned(), value.to_owned()));
            }
        }
        for (_, value) in &mut attributes {
            *value = value.trim().to_owned();
        }
        Manifest { attributes }
    }

    /// First value of `key` (attribute names are case-insensitive, as in Java).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fingerprint::testing::root_with;
    use std::io::{Cursor, Write};
    use zip::write::SimpleFileOptions;
    use zip::CompressionMethod;

    /// Build a jar in memory: `(name, content, deflate?)`.
    pub(crate) fn build_jar(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, content, deflate) in entries {
            let method = if *deflate {
                CompressionMethod::Deflated
            } else {
                CompressionMethod::Stored
            };
            w.start_file(
                *name,
                SimpleFileOptions::default().compression_method(method),
            )
            .unwrap();
            w.write_all(content).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    const MANIFEST: &[u8] =
        b"Manifest-Version: 1.0\r\nMain-Class: com.example.Main\r\nImplementation-Version: 1.2.3\r\n\r\n";

    #[test]
    fn reads_manifest_stored_and_deflated() {
        for deflate in [false, true] {
            let bytes = build_jar(&[
                ("META-INF/MANIFEST.MF", MANIFEST, deflate),
                ("com/example/Main.class", b"\xca\xfe\xba\xbe", deflate),
            ]);
            let jar = Jar::from_bytes(bytes, "t.jar").unwrap();
            let m = jar.manifest().unwrap().unwrap();
            assert_eq!(m.get("Main-Class"), Some("com.example.Main"));
            assert_eq!(m.get("implementation-version"), Some("1.2.3"));
            assert!(jar.contains("com/example/Main.class").unwrap());
            assert!(!jar.contains("com/example/Other.class").unwrap());
        }
    }

    #[test]
    fn opens_through_root_and_reports_missing_manifest() {
        let bytes = build_jar(&[("a.txt", b"hello", true)]);
        let (_d, root) = root_with(&[("/app/x.jar", &bytes)]);
        let jar = Jar::open(&root, "/app/x.jar").unwrap();
        assert_eq!(jar.manifest().unwrap(), None);
        let e = jar.find("a.txt").unwrap().unwrap();
        assert_eq!(jar.read(&e, 5).unwrap(), b"hello");
        assert!(matches!(jar.read(&e, 4), Err(JarError::TooLarge { .. })));
        assert!(Jar::open(&root, "/app/missing.jar").is_err());
    }

    #[test]
    fn manifest_parser_follows_reference_rules() {
        let m = Manifest::parse(
            "Manifest-Version: 1.0\r\nClass-Path: lib/a.jar lib/\r\n b.jar\r\nNoColon\r\nSpring-Boot-Version: 3.1.4 \r\n\r\nName: x/\r\nSpring-Boot-Version: 9\r\n",
        );
        assert_eq!(m.get("Class-Path"), Some("lib/a.jar lib/b.jar"));
        assert_eq!(m.get("Spring-Boot-Version"), Some("3.1.4"));
        assert_eq!(m.get("NoColon"), None);
        assert_eq!(m.get("Name"), None);
        assert_eq!(Manifest::parse("").get("x"), None);
        // A value that itself contains ": " is split at the first one only.
        assert_eq!(Manifest::parse("K: a: b\n").get("K"), Some("a: b"));
    }

    #[test]
    fn fat_jar_scan_keeps_only_wanted_entries_and_reads_little() {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        w.start_file("META-INF/MANIFEST.MF", opts).unwrap();
        w.write_all(MANIFEST).unwrap();
        for i in 0..20_000 {
            w.start_file(
                format!("BOOT-INF/classes/com/example/pkg{}/C{i}.class", i % 97),
                opts,
            )
            .unwrap();
        }
        w.start_file("BOOT-INF/lib/spring-boot-3.1.4.jar", opts)
            .unwrap();
        w.write_all(b"not really a jar").unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let (_d, root) = root_with(&[("/fat.jar", &bytes)]);

        let jar = Jar::open(&root, "/fat.jar").unwrap();
        let opened = jar.bytes_read();
        assert!(opened <= FIRST_EOCD_SEARCH, "opening read {opened} bytes");
        let cd = jar.central_directory_size();
        assert!(cd > 1_000_000, "fixture too small: {cd}");

        // The manifest comes first: one buffer of the central directory is enough.
        let m = jar.manifest().unwrap().unwrap();
        assert_eq!(m.get("Main-Class"), Some("com.example.Main"));
        assert!(
            jar.bytes_read() - opened < 16 * 1024,
            "read {}",
            jar.bytes_read()
        );

        // A full scan streams the whole directory once and keeps only what was asked for.
        let before = jar.bytes_read();
        let libs = jar
            .scan(|n| n.starts_with("BOOT-INF/lib/"), usize::MAX)
            .unwrap();
        assert_eq!(libs.len(), 1);
        assert_eq!(libs[0].name, "BOOT-INF/lib/spring-boot-3.1.4.jar");
        let scanned = jar.bytes_read() - before;
        assert!(scanned <= cd, "scanned {scanned} of a {cd}-byte directory");
        assert!(!jar.contains("nope").unwrap());
        assert!(jar.scan(|_| false, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn zip64_end_records_are_understood() {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for i in 0..70_000u32 {
            w.start_file(format!("{i}"), opts).unwrap();
        }
        w.start_file("META-INF/MANIFEST.MF", opts).unwrap();
        w.write_all(MANIFEST).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        // The 16-bit entry count is saturated, so a zip64 record must be there.
        let eocd = bytes.len() - EOCD_LEN as usize;
        assert_eq!(u16_at(&bytes, eocd + 10), 0xFFFF);
        let jar = Jar::from_bytes(bytes, "z64.jar").unwrap();
        let m = jar.manifest().unwrap().unwrap();
        assert_eq!(m.get("Implementation-Version"), Some("1.2.3"));
    }

    #[test]
    fn zip64_extra_fields_are_applied() {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .large_file(true);
        w.start_file("META-INF/MANIFEST.MF", opts).unwrap();
        w.write_all(MANIFEST).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let jar = Jar::from_bytes(bytes, "big.jar").unwrap();
        assert_eq!(
            jar.manifest().unwrap().unwrap().get("Main-Class"),
            Some("com.example.Main")
        );
        let mut e = Entry {
            name: String::new(),
            method: 0,
            flags: 0,
            crc32: 0,
            compressed_size: 0xFFFF_FFFF,
            uncompressed_size: 5,
            local_header: 0xFFFF_FFFF,
        };
        let mut extra = vec![1, 0, 16, 0];
        extra.extend_from_slice(&7u64.to_le_bytes());
        extra.extend_from_slice(&9u64.to_le_bytes());
        apply_zip64_extra(&mut e, &extra);
        assert_eq!(
            (e.uncompressed_size, e.compressed_size, e.local_header),
            (5, 7, 9)
        );
    }

    #[test]
    fn zip_bomb_hits_the_cap() {
        let bomb = vec![b'A'; 2 * MAX_MANIFEST as usize];
        let mut bytes = build_jar(&[("META-INF/MANIFEST.MF", &bomb, true)]);
        assert!(bytes.len() < 64 * 1024, "bomb is {} bytes", bytes.len());
        let jar = Jar::from_bytes(bytes.clone(), "bomb.jar").unwrap();
        assert!(matches!(jar.manifest(), Err(JarError::TooLarge { .. })));

        // Same bomb, lying about its size in the central directory: the cap still holds.
        let cd = jar.cd_start as usize;
        assert_eq!(u32_at(&bytes, cd), CDH_SIG);
        bytes[cd + 24..cd + 28].copy_from_slice(&100u32.to_le_bytes());
        let jar = Jar::from_bytes(bytes, "liar.jar").unwrap();
        let err = jar.manifest().unwrap_err();
        assert!(matches!(err, JarError::TooLarge { .. }), "{err}");
        assert!(jar.bytes_read() < 64 * 1024);
    }

    #[test]
    fn corrupt_inputs_fail_cleanly() {
        let good = build_jar(&[("META-INF/MANIFEST.MF", MANIFEST, true), ("x", b"y", false)]);

        // Truncated: the end record is gone.
        let truncated = good[..good.len() / 2].to_vec();
        assert!(matches!(
            Jar::from_bytes(truncated, "t.jar"),
            Err(JarError::NotZip { .. })
        ));
        // Truncated by a few bytes only (EOCD partly cut).
        assert!(Jar::from_bytes(good[..good.len() - 3].to_vec(), "t.jar").is_err());

        // Not a zip at all, including tiny and empty files.
        for junk in [&b"#!/bin/sh\necho hello\n"[..], b"", b"PK"] {
            assert!(matches!(
                Jar::from_bytes(junk.to_vec(), "j"),
                Err(JarError::NotZip { .. })
            ));
        }

        // A huge declared central directory size or offset is refused before any allocation.
        let eocd = good.len() - EOCD_LEN as usize;
        let mut huge = good.clone();
        huge[eocd + 12..eocd + 16].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let err = Jar::from_bytes(huge, "h.jar").unwrap_err();
        assert!(matches!(err, JarError::Corrupt { .. }), "{err}");
        let mut far = good.clone();
        far[eocd + 16..eocd + 20].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        assert!(Jar::from_bytes(far, "f.jar").is_err());
        let mut many = good.clone();
        many[eocd + 10..eocd + 12].copy_from_slice(&0xFFF0u16.to_le_bytes());
        assert!(Jar::from_bytes(many, "m.jar").is_err());

        // A local header offset pointing into the central directory.
        let jar = Jar::from_bytes(good.clone(), "g.jar").unwrap();
        let cd = jar.cd_start as usize;
        let mut bad_lfh = good.clone();
        bad_lfh[cd + 42..cd + 46].copy_from_slice(&(cd as u32).to_le_bytes());
        let jar = Jar::from_bytes(bad_lfh, "l.jar").unwrap();
        assert!(matches!(jar.manifest(), Err(JarError::Corrupt { .. })));

        // Damaged deflate data and a wrong CRC.
        let jar = Jar::from_bytes(good.clone(), "g.jar").unwrap();
        let e = jar.find("META-INF/MANIFEST.MF").unwrap().unwrap();
        let data = 30 + e.name.len() + usize::from(u16_at(&good, 28));
        let mut garbled = good.clone();
        for b in &mut garbled[data..data + e.compressed_size as usize] {
            *b = 0xFF;
        }
        assert!(Jar::from_bytes(garbled, "d.jar")
            .unwrap()
            .manifest()
            .is_err());
        let mut bad_crc = good.clone();
        bad_crc[cd + 16] ^= 0xFF;
        assert!(matches!(
            Jar::from_bytes(bad_crc, "c.jar").unwrap().manifest(),
            Err(JarError::Checksum { .. })
        ));
    }

    /// Real jars on this machine (the JDK's, Debian's /usr/share/java) read the same as with
    /// the `zip` crate: every entry name, and the manifest bytes.
    #[test]
    fn real_jars_agree_with_the_zip_crate() {
        let mut jars: Vec<std::path::PathBuf> = Vec::new();
        for dir in ["/usr/share/java"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .chain(
                std::fs::read_dir("/usr/lib/jvm")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("lib")),
            )
        {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "jar") && p.is_file() && !p.is_symlink() {
                    jars.push(p);
                }
            }
        }
        jars.sort();
        jars.truncate(40);
        if jars.is_empty() {
            panic!("no real jars in CI (bash scripts/install-test-deps.sh installs it)");
        }
        for path in &jars {
            let bytes = std::fs::read(path).unwrap();
            let mut reference = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
            let names: Vec<String> = reference
                .file_names()
                .map(|n| n.unwrap().into_owned())
                .collect();
            let root = Root::open(path.parent().unwrap()).unwrap();
            let jar = Jar::open(&root, path.file_name().unwrap().to_str().unwrap()).unwrap();
            let mut ours: Vec<String> = jar
                .scan(|_| true, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
            let mut theirs = names.clone();
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "{}", path.display());
            let expected = reference.by_name("META-INF/MANIFEST.MF").ok().map(|mut m| {
                let mut v = Vec::new();
                m.read_to_end(&mut v).unwrap();
                v
            });
            if let Some(expected) = expected {
                let e = jar.find("META-INF/MANIFEST.MF").unwrap().unwrap();
                assert_eq!(
                    jar.read(&e, MAX_MANIFEST).unwrap(),
                    expected,
                    "{}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn prefixed_executable_jar_and_nested_jars() {
        let inner = build_jar(&[(
            "META-INF/MANIFEST.MF",
            b"Manifest-Version: 1.0\nImplementation-Version: 3.1.4\n",
            true,
        )]);
        let outer = build_jar(&[
            ("META-INF/MANIFEST.MF", MANIFEST, true),
            ("BOOT-INF/lib/spring-boot-3.1.4.jar", &inner, false),
        ]);
        // A launch script in front of the zip ("fully executable" Spring Boot jar).
        let mut prefixed = b"#!/bin/bash\n# launch script\nexit 0\n".to_vec();
        prefixed.extend_from_slice(&outer);
        let jar = Jar::from_bytes(prefixed, "exec.jar").unwrap();
        assert_eq!(
            jar.manifest().unwrap().unwrap().get("Main-Class"),
            Some("com.example.Main")
        );
        let e = jar
            .find("BOOT-INF/lib/spring-boot-3.1.4.jar")
            .unwrap()
            .unwrap();
        let nested = jar.nested(&e, MAX_NESTED_JAR).unwrap();
        assert_eq!(
            nested
                .manifest()
                .unwrap()
                .unwrap()
                .get("Implementation-Version"),
            Some("3.1.4")
        );
        assert!(matches!(jar.nested(&e, 10), Err(JarError::TooLarge { .. })));
    }
}
