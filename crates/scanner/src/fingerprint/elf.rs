//! Lazy, bounded inspection of ELF executables from a container.
//!
//! Binaries are hostile and can be hundreds of MB (GraalVM native images, Node.js), so an
//! [`ElfBinary`] reads only the file header, the program and section headers and the section
//! name table when opened; everything else is read on demand, with a size cap, through
//! positioned reads (`pread`). Headers are decoded with the `object` crate over a
//! [`ReadCache`], which is dropped once the headers are copied out, so no full symbol table is
//! ever loaded by accident. A corrupt file is an [`ElfError`], never a panic.

use std::fs::File;
use std::io;
use std::ops::{ControlFlow, Range};
use std::os::unix::fs::FileExt;

use memchr::memmem;
use object::elf::{FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::read::ReadCache;
use object::Endianness;

use super::paths::dirname;
use super::Root;
use crate::process::ProcessFacts;

/// Most bytes read for one section or one read of an executable.
pub const MAX_SECTION_BYTES: u64 = 64 << 20;
/// Most bytes a streaming search looks at in total.
pub const MAX_SCAN_BYTES: u64 = 512 << 20;
/// Buffer of a streaming search: big enough to amortise syscalls, small enough to stay in cache.
const SCAN_BUFFER: usize = 1 << 20;
/// Real binaries have tens of sections and about ten segments; these only stop absurd headers.
const MAX_SECTIONS: u32 = 1 << 14;
const MAX_SEGMENTS: u32 = 1 << 10;
const MAX_SHSTRTAB: u64 = 1 << 20;
const MAX_SECTION_NAME: usize = 256;
/// `.dynamic` of real binaries is a few hundred bytes.
const MAX_DYNAMIC: u64 = 64 << 10;
const MAX_NEEDED: usize = 256;
/// Longest library name or run path read from `.dynstr`.
const MAX_DYN_STRING: usize = 4096;
/// `.dynsym`/`.dynstr` caps for [`ElfBinary::dynamic_symbol`] (Node's are 1.8 MB and 5.3 MB).
const MAX_DYNSYM: u64 = 16 << 20;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const SHT_NOBITS: u32 = 8;
const SHT_DYNSYM: u32 = 11;
const SHF_ALLOC: u64 = 2;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// Why an executable could not be inspected. Callers usually just log it at debug level.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot open {path}: {cause}")]
    Open { path: String, cause: io::Error },
    #[error("{path} is not an ELF file")]
    NotElf { path: String },
    #[error("malformed ELF file {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: io::Error },
    #[error("{what} of {path} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        path: String,
        what: String,
        size: u64,
        max: u64,
    },
}

/// A section header, copied out of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
}

impl Section {
    /// Bytes of the file the section occupies (`.bss`-like sections occupy none).
    pub fn file_range(&self) -> Option<Range<u64>> {
        if self.sh_type == SHT_NOBITS {
            return None;
        }
        Some(self.offset..self.offset.checked_add(self.size)?)
    }
}

/// A program header, copied out of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub p_type: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

impl Segment {
    pub fn is_load(&self) -> bool {
        self.p_type == PT_LOAD
    }
}

/// What `.dynamic` says about shared libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `DT_NEEDED` names, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` and `DT_RPATH` directories, unexpanded (`$ORIGIN` kept).
    pub run_paths: Vec<String>,
}

/// One match of a streaming search.
#[derive(Debug)]
pub struct Hit<'a> {
    /// Index of the needle that matched.
    pub needle: usize,
    /// File offset of the match.
    pub offset: u64,
    /// The needle and up to `after` bytes that follow it (fewer at the end of a range).
    pub bytes: &'a [u8],
    len: usize,
}

impl Hit<'_> {
    /// Length of the needle that matched.
    pub fn needle_len(&self) -> usize {
        self.len
    }

    /// The bytes after the needle.
    pub fn rest(&self) -> &[u8] {
        self.bytes.get(self.len..).unwrap_or_default()
    }
}

/// An open ELF executable with its headers decoded.
#[derive(Debug)]
pub struct ElfBinary {
    file: File,
    path: String,
    len: u64,
    is_64: bool,
    big_endian: bool,
    sections: Vec<Section>,
    segments: Vec<Segment>,
}

/// True if `path` in `root` is a regular file starting with the ELF magic.
pub fn is_elf(root: &Root, path: &str) -> bool {
    let Ok(file) = root.open_file(path) else {
        return false;
    };
    let mut magic = [0u8; 4];
    file.read_exact_at(&mut magic, 0).is_ok() && &magic == ELF_MAGIC
}

impl ElfBinary {
    /// Open `path` inside `root` and decode its headers (a few KB of reads).
    pub fn open(root: &Root, path: &str) -> Result<ElfBinary, ElfError> {
        let file = root.open_file(path).map_err(|source| ElfError::Open {
            path: path.to_owned(),
            cause: source,
        })?;
        Self::from_file(file, path)
    }

    fn from_file(file: File, path: &str) -> Result<ElfBinary, ElfError> {
        let len = file
            .metadata()
            .map_err(|source| ElfError::Read {
                path: path.to_owned(),
                cause: source,
            })?
            .len();
        let mut ident = [0u8; 16];
        if file.read_exact_at(&mut ident, 0).is_err() || &ident[..4] != ELF_MAGIC {
            return Err(ElfError::NotElf {
                path: path.to_owned(),
            });
        }
        let malformed = |reason: String| ElfError::Malformed {
            path: path.to_owned(),
            reason,
        };
        let is_64 = match ident[4] {
            1 => false,
            2 => true,
            other => return Err(malformed(format!("unknown ELF class {other}"))),
        };
        let big_endian = match ident[5] {
            1 => false,
            2 => true,
            other => return Err(malformed(format!("unknown ELF data encoding {other}"))),
        };
        let headers = {
            let cache = ReadCache::new(&file);
            if is_64 {
                parse_headers::<FileHeader64<Endianness>>(&cache)
            } else {
                parse_headers::<FileHeader32<Endianness>>(&cache)
            }
        }
        .map_err(malformed)?;
        let mut binary = ElfBinary {
            file,
            path: path.to_owned(),
            len,
            is_64,
            big_endian,
            sections: Vec::new(),
            segments: headers.segments,
        };
        binary.sections = binary.name_sections(headers.sections, headers.shstrtab)?;
        Ok(binary)
    }

    /// Resolve section names from the section name table, read once.
    fn name_sections(
        &self,
        raw: Vec<(u32, Section)>,
        shstrtab: Option<Range<u64>>,
    ) -> Result<Vec<Section>, ElfError> {
        let Some(range) = shstrtab else {
            return Ok(raw.into_iter().map(|(_, s)| s).collect());
        };
        let names = self.read_range(&range, MAX_SHSTRTAB, "section name table")?;
        Ok(raw
            .into_iter()
            .map(|(name_offset, mut section)| {
                if let Some(tail) = names.get(name_offset as usize..) {
                    let end = memchr::memchr(0, tail)
                        .unwrap_or(tail.len())
                        .min(MAX_SECTION_NAME);
                    section.name =
                        String::from_utf8_lossy(tail.get(..end).unwrap_or_default()).into_owned();
                }
                section
            })
            .collect())
    }

    /// The path this binary was opened with (inside the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_64(&self) -> bool {
        self.is_64
    }

    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// File ranges of the named sections that exist and have file data, in the order given.
    pub fn section_ranges(&self, names: &[&str]) -> Vec<Range<u64>> {
        names
            .iter()
            .filter_map(|n| self.section(n)?.file_range())
            .collect()
    }

    fn malformed(&self, reason: impl Into<String>) -> ElfError {
        ElfError::Malformed {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Read `range` of the file; it must lie inside the file and be at most `max` bytes.
    pub fn read_range(
        &self,
        range: &Range<u64>,
        max: u64,
        what: &str,
    ) -> Result<Vec<u8>, ElfError> {
        if range.start > range.end || range.end > self.len {
            return Err(self.malformed(format!(
                "{what} at {}..{} is outside the {}-byte file",
                range.start, range.end, self.len
            )));
        }
        let size = range.end.saturating_sub(range.start);
        if size > max {
            return Err(ElfError::TooLarge {
                path: self.path.clone(),
                what: what.to_owned(),
                size,
                max,
            });
        }
        let mut buf = vec![0u8; size as usize];
        self.file
            .read_exact_at(&mut buf, range.start)
            .map_err(|source| ElfError::Read {
                path: self.path.clone(),
                cause: source,
            })?;
        Ok(buf)
    }

    /// The bytes of a section, at most `max` (a bigger section is an error).
    pub fn read_section(&self, section: &Section, max: u64) -> Result<Vec<u8>, ElfError> {
        match section.file_range() {
            Some(range) => self.read_range(&range, max, &format!("section {}", section.name)),
            None => Ok(Vec::new()),
        }
    }

    /// File offset of virtual address `addr` and how many file bytes follow it in the same
    /// loadable segment (or allocated section when the file has no program headers).
    pub fn addr_to_offset(&self, addr: u64) -> Option<(u64, u64)> {
        let in_load = self.segments.iter().filter(|s| s.is_load()).find_map(|s| {
            let delta = addr.checked_sub(s.vaddr)?;
            if delta >= s.filesz {
                return None;
            }
            Some((s.offset.checked_add(delta)?, s.filesz.checked_sub(delta)?))
        });
        in_load.or_else(|| {
            self.sections
                .iter()
                .filter(|s| s.flags & SHF_ALLOC != 0 && s.sh_type != SHT_NOBITS)
                .find_map(|s| {
                    let delta = addr.checked_sub(s.addr)?;
                    if delta >= s.size {
                        return None;
                    }
                    Some((s.offset.checked_add(delta)?, s.size.checked_sub(delta)?))
                })
        })
    }

    /// Read `size` bytes at virtual address `addr` (bounded by [`MAX_SECTION_BYTES`]).
    pub fn read_addr(&self, addr: u64, size: u64) -> Result<Vec<u8>, ElfError> {
        let (offset, available) = self
            .addr_to_offset(addr)
            .ok_or_else(|| self.malformed(format!("address {addr:#x} is not in the file")))?;
        if size > available {
            return Err(self.malformed(format!(
                "{size} bytes at {addr:#x} run past the end of their segment"
            )));
        }
        let end = offset
            .checked_add(size)
            .ok_or_else(|| self.malformed(format!("{size} bytes at {addr:#x} overflow")))?;
        self.read_range(&(offset..end), MAX_SECTION_BYTES, "data")
    }

    /// A NUL-terminated string at `offset`, at most `max` bytes long.
    pub fn read_cstr_at(&self, offset: u64, max: usize) -> Result<Vec<u8>, ElfError> {
        let with_nul = (max as u64).saturating_add(1);
        let end = offset.saturating_add(with_nul).min(self.len);
        if offset >= end {
            return Err(self.malformed(format!("string at {offset} is outside the file")));
        }
        let mut buf = self.read_range(&(offset..end), with_nul, "string")?;
        match memchr::memchr(0, &buf) {
            Some(nul) => {
                buf.truncate(nul);
                Ok(buf)
            }
            None => Err(self.malformed(format!("string at {offset} is not terminated"))),
        }
    }

    /// Decode an unsigned word of the file's size and byte order.
    pub fn word(&self, bytes: &[u8], size: usize) -> Option<u64> {
        let b = bytes.get(..size)?;
        Some(match (size, self.big_endian) {
            (4, false) => u64::from(u32::from_le_bytes(b.try_into().ok()?)),
            (4, true) => u64::from(u32::from_be_bytes(b.try_into().ok()?)),
            (8, false) => u64::from_le_bytes(b.try_into().ok()?),
            (8, true) => u64::from_be_bytes(b.try_into().ok()?),
            (2, false) => u64::from(u16::from_le_bytes(b.try_into().ok()?)),
            (2, true) => u64::from(u16::from_be_bytes(b.try_into().ok()?)),
            (1, _) => u64::from(*b.first()?),
            _ => return None,
        })
    }

    /// `DT_NEEDED` and run paths from the dynamic segment (empty for static binaries).
    /// Works without section headers: strings are found through `DT_STRTAB` and the segments.
    pub fn dynamic(&self) -> Result<DynamicInfo, ElfError> {
        let mut info = DynamicInfo::default();
        let Some(range) = self
            .segments
            .iter()
            .find(|s| s.p_type == PT_DYNAMIC)
            .map(|s| s.offset..s.offset.saturating_add(s.filesz))
        else {
            return Ok(info);
        };
        let table = self.read_range(&range, MAX_DYNAMIC, "dynamic segment")?;
        let word: usize = if self.is_64 { 8 } else { 4 };
        let mut strtab = None;
        let mut needed = Vec::new();
        let mut paths = Vec::new();
        for entry in table.chunks_exact(word.saturating_mul(2)) {
            let (tag, val) = entry.split_at(word);
            let (Some(tag), Some(val)) = (self.word(tag, word), self.word(val, word)) else {
                break;
            };
            match tag {
                DT_NULL => break,
                DT_NEEDED if needed.len() < MAX_NEEDED => needed.push(val),
                DT_STRTAB => strtab = Some(val),
                DT_RPATH | DT_RUNPATH if paths.len() < MAX_NEEDED => paths.push(val),
                _ => {}
            }
        }
        let Some(strtab) = strtab else {
            return Ok(info);
        };
        let (strtab_offset, strtab_len) = self
            .addr_to_offset(strtab)
            .ok_or_else(|| self.malformed("DT_STRTAB is not in the file"))?;
        let string = |at: u64| -> Option<String> {
            if at >= strtab_len {
                return None;
            }
            let bytes = self
                .read_cstr_at(strtab_offset.checked_add(at)?, MAX_DYN_STRING)
                .ok()?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        };
        info.needed = needed.into_iter().filter_map(string).collect();
        info.run_paths = paths
            .into_iter()
            .filter_map(string)
            .flat_map(|p| {
                p.split(':')
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .take(MAX_NEEDED)
            .collect();
        Ok(info)
    }

    /// Value and size of the dynamic symbol `name` (reads `.dynsym` and its string table,
    /// both capped). `None` when the binary has no such symbol.
    pub fn dynamic_symbol(&self, name: &str) -> Result<Option<(u64, u64)>, ElfError> {
        let Some(dynsym) = self.sections.iter().find(|s| s.sh_type == SHT_DYNSYM) else {
            return Ok(None);
        };
        let strtab = self
            .sections
            .get(dynsym.link as usize)
            .ok_or_else(|| self.malformed(".dynsym links to a missing string table"))?;
        let syms = self.read_section(dynsym, MAX_DYNSYM)?;
        let strings = self.read_section(strtab, MAX_DYNSYM)?;
        let entry = if self.is_64 { 24 } else { 16 };
        let wanted = name.as_bytes();
        for sym in syms.chunks_exact(entry) {
            let Some(name_offset) = self.word(sym, 4) else {
                continue;
            };
            let Some(tail) = strings.get(name_offset as usize..) else {
                continue;
            };
            if !(tail.starts_with(wanted) && tail.get(wanted.len()) == Some(&0)) {
                continue;
            }
            // Elf64_Sym: name u32, info u8, other u8, shndx u16, value u64, size u64.
            // Elf32_Sym: name u32, value u32, size u32, info, other, shndx.
            let field = |at: usize, len: usize| self.word(sym.get(at..).unwrap_or_default(), len);
            let (value, size) = if self.is_64 {
                (field(8, 8), field(16, 8))
            } else {
                (field(4, 4), field(8, 4))
            };
            if let (Some(value), Some(size)) = (value, size) {
                if value != 0 {
                    return Ok(Some((value, size)));
                }
            }
        }
        Ok(None)
    }

    /// Stream over `ranges` of the file looking for `needles`, calling `on_hit` for each match
    /// in file order (per range) until it breaks. At most `cap` bytes are read in total; memory
    /// use is one fixed buffer. Returns the number of bytes read.
    pub fn scan<F>(
        &self,
        ranges: &[Range<u64>],
        needles: &[&[u8]],
        after: usize,
        cap: u64,
        on_hit: F,
    ) -> Result<u64, ElfError>
    where
        F: FnMut(Hit<'_>) -> ControlFlow<()>,
    {
        self.scan_with_buffer(ranges, needles, after, cap, SCAN_BUFFER, on_hit)
    }

    fn scan_with_buffer<F>(
        &self,
        ranges: &[Range<u64>],
        needles: &[&[u8]],
        after: usize,
        cap: u64,
        buffer: usize,
        mut on_hit: F,
    ) -> Result<u64, ElfError>
    where
        F: FnMut(Hit<'_>) -> ControlFlow<()>,
    {
        let finders: Vec<memmem::Finder<'_>> = needles
            .iter()
            .filter(|n| !n.is_empty())
            .map(memmem::Finder::new)
            .collect();
        if finders.len() != needles.len() {
            return Err(self.malformed("empty search pattern"));
        }
        let longest = needles.iter().map(|n| n.len()).max().unwrap_or(0);
        // A match starting in the last `carry` bytes of a window is looked at in the next one,
        // so every match is seen once, whole, with its `after` bytes.
        // Sizes here are the code's own constants (needles, `after`, buffer) or are clamped to
        // the file and the budget, so saturating arithmetic never actually saturates; it only
        // rules out a panic.
        let carry = longest.saturating_add(after);
        let buffer = buffer.max(carry.saturating_mul(2).saturating_add(1));
        let mut buf = vec![0u8; buffer];
        let mut budget = cap;
        let mut hits: Vec<(usize, usize, usize)> = Vec::new();
        for range in ranges {
            let end = range.end.min(self.len);
            let mut start = range.start;
            // Invariant: filled <= buffer, and start + filled <= end.
            let mut filled = 0usize;
            while start < end {
                let room = buffer.saturating_sub(filled) as u64;
                let left = end.saturating_sub(start).saturating_sub(filled as u64);
                let want = usize::try_from(room.min(left).min(budget)).unwrap_or(0);
                if want > 0 {
                    let dst = buf
                        .get_mut(filled..filled.saturating_add(want))
                        .ok_or_else(|| self.malformed("scan window"))?;
                    self.file
                        .read_exact_at(dst, start.saturating_add(filled as u64))
                        .map_err(|source| ElfError::Read {
                            path: self.path.clone(),
                            cause: source,
                        })?;
                    filled = filled.saturating_add(want);
                    budget = budget.saturating_sub(want as u64);
                }
                let window = buf.get(..filled).unwrap_or_default();
                let last = start.saturating_add(filled as u64) >= end || budget == 0;
                let limit = if last {
                    filled
                } else {
                    filled.saturating_sub(carry)
                };
                hits.clear();
                for (index, (finder, needle)) in finders.iter().zip(needles).enumerate() {
                    hits.extend(
                        finder
                            .find_iter(window)
                            .take_while(|&at| at < limit)
                            .map(|at| (at, index, needle.len())),
                    );
                }
                hits.sort_unstable();
                for &(at, needle, len) in &hits {
                    let stop = at.saturating_add(len).saturating_add(after).min(filled);
                    let hit = Hit {
                        needle,
                        offset: start.saturating_add(at as u64),
                        bytes: window.get(at..stop).unwrap_or_default(),
                        len,
                    };
                    if on_hit(hit).is_break() {
                        return Ok(cap.saturating_sub(budget));
                    }
                }
                if budget == 0 {
                    return Ok(cap);
                }
                if last || limit == 0 {
                    break;
                }
                buf.copy_within(limit..filled, 0);
                filled = filled.saturating_sub(limit);
                start = start.saturating_add(limit as u64);
            }
        }
        Ok(cap.saturating_sub(budget))
    }
}

struct RawHeaders {
    sections: Vec<(u32, Section)>,
    segments: Vec<Segment>,
    shstrtab: Option<Range<u64>>,
}

/// Decode program and section headers with `object` (counts checked before any big read).
fn parse_headers<Elf: FileHeader<Endian = Endianness>>(
    data: &ReadCache<&File>,
) -> Result<RawHeaders, String> {
    let header = Elf::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let phnum = header.phnum(endian, data).map_err(|e| e.to_string())?;
    if phnum > MAX_SEGMENTS {
        return Err(format!("{phnum} program headers"));
    }
    let shnum = header.shnum(endian, data).map_err(|e| e.to_string())?;
    if shnum > MAX_SECTIONS {
        return Err(format!("{shnum} section headers"));
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|p| Segment {
            p_type: p.p_type(endian).0,
            flags: p.p_flags(endian).0,
            vaddr: p.p_vaddr(endian).into(),
            offset: p.p_offset(endian).into(),
            filesz: p.p_filesz(endian).into(),
            memsz: p.p_memsz(endian).into(),
        })
        .collect();
    let headers = header
        .section_headers(endian, data)
        .map_err(|e| e.to_string())?;
    let sections: Vec<(u32, Section)> = headers
        .iter()
        .map(|s| {
            (
                s.sh_name(endian),
                Section {
                    name: String::new(),
                    sh_type: s.sh_type(endian).0,
                    flags: s.sh_flags(endian).0,
                    addr: s.sh_addr(endian).into(),
                    offset: s.sh_offset(endian).into(),
                    size: s.sh_size(endian).into(),
                    link: s.sh_link(endian),
                },
            )
        })
        .collect();
    let shstrtab = if sections.is_empty() {
        None
    } else {
        let index = header.shstrndx(endian, data).map_err(|e| e.to_string())?;
        let (_, table) = sections
            .get(index as usize)
            .ok_or_else(|| format!("section name table index {index} out of range"))?;
        table.file_range()
    };
    Ok(RawHeaders {
        sections,
        segments,
        shstrtab,
    })
}

/// Paths to try for a process's executable, inside the container: the kernel's `exe` link,
/// then `argv[0]` (absolute, or relative to the working directory). No `PATH` lookup.
pub fn executable_paths(process: &ProcessFacts) -> Vec<String> {
    let mut paths = Vec::new();
    if let Some(exe) = process.exe.as_deref().filter(|e| e.starts_with('/')) {
        paths.push(exe.to_owned());
    }
    if let Some(argv0) = process.argv.first().filter(|a| !a.is_empty()) {
        let candidate = if argv0.starts_with('/') {
            Some(argv0.clone())
        } else {
            process
                .cwd
                .as_deref()
                .map(|cwd| format!("{}/{argv0}", cwd.trim_end_matches('/')))
        };
        if let Some(c) = candidate {
            if !paths.contains(&c) {
                paths.push(c);
            }
        }
    }
    paths
}

/// Open the process's executable as ELF: the first of [`executable_paths`] that exists decides
/// (a later candidate is only tried when an earlier one cannot be opened at all).
pub fn open_executable(root: &Root, process: &ProcessFacts) -> Option<ElfBinary> {
    for path in executable_paths(process) {
        match ElfBinary::open(root, &path) {
            Ok(elf) => return Some(elf),
            Err(ElfError::Open { .. }) => continue,
            Err(e) => {
                tracing::debug!(pid = process.pid, error = %e, "executable is not usable ELF");
                return None;
            }
        }
    }
    None
}

/// Find a shared library a binary needs, the way the dynamic loader would look for it (run
/// paths with `$ORIGIN`, then the usual directories), restricted to names `wanted` accepts.
/// Returns the path inside the root.
pub fn find_needed_library(
    root: &Root,
    binary: &ElfBinary,
    wanted: impl Fn(&str) -> bool,
) -> Option<String> {
    let dynamic = binary.dynamic().ok()?;
    let origin = dirname(binary.path());
    let prefix = dirname(&origin);
    let mut dirs: Vec<String> = dynamic
        .run_paths
        .iter()
        .map(|d| d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin))
        .collect();
    dirs.push(origin.clone());
    dirs.push(format!("{}/lib", prefix.trim_end_matches('/')));
    dirs.extend(LIBRARY_DIRS.iter().map(|d| (*d).to_owned()));
    for name in dynamic
        .needed
        .iter()
        .filter(|n| wanted(n) && !n.contains('/'))
    {
        for dir in &dirs {
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            if root.is_file(&path) {
                return Some(path);
            }
        }
    }
    None
}

/// Where the dynamic loader looks by default (glibc multiarch and musl layouts).
const LIBRARY_DIRS: &[&str] = &[
    "/usr/local/lib",
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/s390x-linux-gnu",
    "/usr/lib/s390x-linux-gnu",
    "/lib/powerpc64le-linux-gnu",
    "/usr/lib/powerpc64le-linux-gnu",
];

/// Test helpers shared by the fingerprint modules' tests: a tiny ELF writer.
#[cfg(test)]
pub mod testelf {
    /// A section of a hand-built ELF file.
    pub struct TestSection {
        pub name: &'static str,
        pub addr: u64,
        pub writable: bool,
        pub data: Vec<u8>,
    }

    impl TestSection {
        pub fn new(name: &'static str, addr: u64, writable: bool, data: Vec<u8>) -> Self {
            TestSection {
                name,
                addr,
                writable,
                data,
            }
        }
    }

    /// `.dynamic` and `.dynstr` contents of a 64-bit little-endian launcher that needs
    /// `library` and libc (`DT_STRTAB` at 0x3000, where the caller places `.dynstr`).
    pub fn dynamic_needing(library: &str) -> (Vec<u8>, Vec<u8>) {
        let mut dynstr = format!("\0{library}\0libc.so.6\0").into_bytes();
        dynstr.resize(dynstr.len().div_ceil(8) * 8, 0);
        let libc_offset = 1 + library.len() as u64 + 1;
        let mut dynamic = Vec::new();
        for (tag, val) in [(1u64, 1u64), (1, libc_offset), (5, 0x3000), (0, 0)] {
            dynamic.extend_from_slice(&tag.to_le_bytes());
            dynamic.extend_from_slice(&val.to_le_bytes());
        }
        (dynamic, dynstr)
    }

    /// Build an executable ELF: one `PT_LOAD` per section (at the section's address), optional
    /// `PT_DYNAMIC` over a section named `.dynamic`, and section headers unless `strip`.
    pub fn build(is_64: bool, big_endian: bool, sections: &[TestSection], strip: bool) -> Vec<u8> {
        let put = |out: &mut Vec<u8>, value: u64, size: usize| {
            let bytes = if big_endian {
                value.to_be_bytes()[8 - size..].to_vec()
            } else {
                value.to_le_bytes()[..size].to_vec()
            };
            out.extend_from_slice(&bytes);
        };
        let word = if is_64 { 8 } else { 4 };
        let ehsize = if is_64 { 64 } else { 52 };
        let phentsize = if is_64 { 56 } else { 32 };
        let shentsize = if is_64 { 64 } else { 40 };
        let has_dynamic = sections.iter().any(|s| s.name == ".dynamic");
        let phnum = sections.len() + usize::from(has_dynamic);
        // Layout: header, program headers, section data (16-aligned), shstrtab, section headers.
        let mut offset = ehsize + phnum * phentsize;
        let mut offsets = Vec::new();
        for s in sections {
            offset = (offset + 15) & !15;
            offsets.push(offset);
            offset += s.data.len();
        }
        let mut shstrtab = vec![0u8];
        let mut name_offsets = Vec::new();
        for s in sections {
            name_offsets.push(shstrtab.len());
            shstrtab.extend_from_slice(s.name.as_bytes());
            shstrtab.push(0);
        }
        let shstrtab_name = shstrtab.len();
        shstrtab.extend_from_slice(b".shstrtab\0");
        let shstrtab_offset = offset;
        offset += shstrtab.len();
        let shoff = (offset + 7) & !7;
        let shnum = if strip { 0 } else { sections.len() + 2 };

        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF");
        out.push(if is_64 { 2 } else { 1 });
        out.push(if big_endian { 2 } else { 1 });
        out.push(1);
        out.resize(16, 0);
        put(&mut out, 2, 2); // ET_EXEC
        put(&mut out, if is_64 { 62 } else { 3 }, 2);
        put(&mut out, 1, 4);
        put(&mut out, 0, word); // entry
        put(&mut out, ehsize as u64, word); // phoff
        put(&mut out, if strip { 0 } else { shoff as u64 }, word);
        put(&mut out, 0, 4); // flags
        put(&mut out, ehsize as u64, 2);
        put(&mut out, phentsize as u64, 2);
        put(&mut out, phnum as u64, 2);
        put(&mut out, shentsize as u64, 2);
        put(&mut out, shnum as u64, 2);
        put(
            &mut out,
            if strip { 0 } else { sections.len() as u64 + 1 },
            2,
        );
        assert_eq!(out.len(), ehsize);

        let phdr =
            |out: &mut Vec<u8>, p_type: u64, flags: u64, off: usize, addr: u64, len: usize| {
                put(out, p_type, 4);
                if is_64 {
                    put(out, flags, 4);
                    put(out, off as u64, 8);
                    put(out, addr, 8);
                    put(out, addr, 8);
                    put(out, len as u64, 8);
                    put(out, len as u64, 8);
                    put(out, 16, 8);
                } else {
                    put(out, off as u64, 4);
                    put(out, addr, 4);
                    put(out, addr, 4);
                    put(out, len as u64, 4);
                    put(out, len as u64, 4);
                    put(out, flags, 4);
                    put(out, 16, 4);
                }
            };
        for (s, off) in sections.iter().zip(&offsets) {
            let flags = if s.writable { 6 } else { 4 };
            phdr(&mut out, 1, flags, *off, s.addr, s.data.len());
        }
        if let Some(i) = sections.iter().position(|s| s.name == ".dynamic") {
            phdr(
                &mut out,
                2,
                6,
                offsets[i],
                sections[i].addr,
                sections[i].data.len(),
            );
        }
        for (s, off) in sections.iter().zip(&offsets) {
            out.resize(*off, 0);
            out.extend_from_slice(&s.data);
        }
        out.resize(shstrtab_offset, 0);
        out.extend_from_slice(&shstrtab);
        if strip {
            return out;
        }
        out.resize(shoff, 0);
        let shdr = |out: &mut Vec<u8>,
                    name: usize,
                    sh_type: u64,
                    flags: u64,
                    addr: u64,
                    off: usize,
                    size: usize| {
            put(out, name as u64, 4);
            put(out, sh_type, 4);
            put(out, flags, word);
            put(out, addr, word);
            put(out, off as u64, word);
            put(out, size as u64, word);
            put(out, 0, 4); // link
            put(out, 0, 4); // info
            put(out, 1, word);
            put(out, 0, word);
        };
        shdr(&mut out, 0, 0, 0, 0, 0, 0);
        for ((s, off), name) in sections.iter().zip(&offsets).zip(&name_offsets) {
            let flags = if s.writable { 3 } else { 2 };
            let sh_type = if s.name == ".dynamic" { 6 } else { 1 };
            shdr(&mut out, *name, sh_type, flags, s.addr, *off, s.data.len());
        }
        shdr(
            &mut out,
            shstrtab_name,
            3,
            0,
            0,
            shstrtab_offset,
            shstrtab.len(),
        );
        out
    }

    /// Write `bytes` as an executable file at `path` under `dir`.
    pub fn write(dir: &std::path::Path, path: &str, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testelf::{build, write, TestSection};
    use super::*;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn decodes_headers_of_all_classes_and_byte_orders() {
        let (dir, root) = root();
        for (is_64, big) in [(true, false), (true, true), (false, false), (false, true)] {
            let bytes = build(
                is_64,
                big,
                &[
                    TestSection::new(".rodata", 0x1000, false, b"hello\0world".to_vec()),
                    TestSection::new(".data", 0x2000, true, vec![7; 32]),
                ],
                false,
            );
            write(dir.path(), "/bin/x", &bytes);
            let elf = ElfBinary::open(&root, "/bin/x").unwrap();
            assert_eq!(elf.is_64(), is_64);
            assert_eq!(elf.is_big_endian(), big);
            let rodata = elf.section(".rodata").unwrap().clone();
            assert_eq!(elf.read_section(&rodata, 100).unwrap(), b"hello\0world");
            assert!(elf.read_section(&rodata, 3).is_err());
            assert_eq!(elf.read_addr(0x1006, 5).unwrap(), b"world");
            assert!(elf.read_addr(0x1006, 6).is_err());
            assert!(elf.read_addr(0x5000, 1).is_err());
            assert_eq!(elf.segments().iter().filter(|s| s.is_load()).count(), 2);
            assert!(elf.section(".text").is_none());
            assert!(is_elf(&root, "/bin/x"));
        }
    }

    #[test]
    fn corrupt_files_are_errors() {
        let (dir, root) = root();
        write(dir.path(), "/script", b"#!/bin/sh\necho hi\n");
        assert!(matches!(
            ElfBinary::open(&root, "/script"),
            Err(ElfError::NotElf { .. })
        ));
        assert!(!is_elf(&root, "/script"));
        assert!(matches!(
            ElfBinary::open(&root, "/missing"),
            Err(ElfError::Open { .. })
        ));
        let good = build(
            true,
            false,
            &[TestSection::new(".rodata", 0x1000, false, vec![1; 64])],
            false,
        );
        // Truncated in the middle of the section headers.
        write(dir.path(), "/truncated", &good[..good.len() - 10]);
        assert!(ElfBinary::open(&root, "/truncated").is_err());
        // Header only.
        write(dir.path(), "/short", &good[..20]);
        assert!(ElfBinary::open(&root, "/short").is_err());
        // Section headers claim far more entries than the file holds.
        let mut huge = good.clone();
        huge[60..62].copy_from_slice(&0xfff0u16.to_le_bytes());
        write(dir.path(), "/huge-shnum", &huge);
        assert!(ElfBinary::open(&root, "/huge-shnum").is_err());
        // A section pointing past the end of the file.
        let mut past = good.clone();
        let shoff = u64::from_le_bytes(good[40..48].try_into().unwrap()) as usize;
        let rodata_hdr = shoff + 64;
        past[rodata_hdr + 24..rodata_hdr + 32].copy_from_slice(&(1u64 << 40).to_le_bytes());
        write(dir.path(), "/past", &past);
        let elf = ElfBinary::open(&root, "/past").unwrap();
        let rodata = elf.section(".rodata").unwrap().clone();
        assert!(elf.read_section(&rodata, MAX_SECTION_BYTES).is_err());
        // Garbage class byte.
        let mut class = good.clone();
        class[4] = 9;
        write(dir.path(), "/class", &class);
        assert!(matches!(
            ElfBinary::open(&root, "/class"),
            Err(ElfError::Malformed { .. })
        ));
        // Random bytes after a valid magic never panic.
        let mut state = 0x1234_5678_u64;
        for i in 0..200 {
            let mut bytes = good.clone();
            for _ in 0..8 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = 4 + (state >> 33) as usize % (bytes.len() - 4);
                bytes[at] = (state >> 16) as u8;
            }
            let name = format!("/fuzz{i}");
            write(dir.path(), &name, &bytes);
            if let Ok(elf) = ElfBinary::open(&root, &name) {
                let _ = elf.dynamic();
                let _ = elf.dynamic_symbol("x");
                for s in elf.sections().to_vec() {
                    let _ = elf.read_section(&s, 1 << 16);
                }
            }
        }
    }

    #[test]
    fn streaming_search_finds_matches_across_buffer_boundaries() {
        let (dir, root) = root();
        let mut data = vec![b'.'; 10_000];
        let needle = b"needle=";
        // Matches straddling every possible boundary of a 64-byte buffer.
        let positions = [0usize, 50, 63, 120, 131, 190, 500, 9_990];
        for &p in &positions {
            data[p..p + needle.len()].copy_from_slice(needle);
            if p + 7 + 3 <= data.len() {
                data[p + 7..p + 10].copy_from_slice(b"v42");
            }
        }
        let bytes = build(
            true,
            false,
            &[TestSection::new(".data", 0x1000, true, data.clone())],
            false,
        );
        write(dir.path(), "/bin/x", &bytes);
        let elf = ElfBinary::open(&root, "/bin/x").unwrap();
        let section = elf.section(".data").unwrap().clone();
        let range = section.file_range().unwrap();
        for buffer in [1usize, 64, 100, 4096, SCAN_BUFFER] {
            let mut found = Vec::new();
            elf.scan_with_buffer(
                std::slice::from_ref(&range),
                &[needle],
                3,
                MAX_SCAN_BYTES,
                buffer,
                |hit| {
                    found.push((hit.offset - range.start, hit.bytes.to_vec()));
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
            let offsets: Vec<u64> = found.iter().map(|(o, _)| *o).collect();
            assert_eq!(
                offsets,
                positions.iter().map(|&p| p as u64).collect::<Vec<_>>(),
                "buffer {buffer}"
            );
            for (offset, bytes) in &found {
                if *offset as usize + 10 <= data.len() {
                    assert_eq!(bytes, b"needle=v42", "buffer {buffer} at {offset}");
                }
            }
        }
        // Stopping early, and the byte cap.
        let mut count = 0;
        elf.scan(
            std::slice::from_ref(&range),
            &[needle],
            0,
            MAX_SCAN_BYTES,
            |_| {
                count += 1;
                ControlFlow::Break(())
            },
        )
        .unwrap();
        assert_eq!(count, 1);
        let mut found = Vec::new();
        let read = elf
            .scan_with_buffer(std::slice::from_ref(&range), &[needle], 0, 200, 64, |hit| {
                found.push(hit.offset - range.start);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(read, 200);
        assert_eq!(found, vec![0, 50, 63, 120, 131, 190]);
        // Several needles are reported in file order.
        let mut order = Vec::new();
        elf.scan(
            std::slice::from_ref(&range),
            &[b"v42", needle],
            0,
            MAX_SCAN_BYTES,
            |hit| {
                order.push(hit.needle);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(&order[..4], &[1, 0, 1, 0]);
    }

    #[test]
    fn executable_paths_prefer_exe_then_argv0() {
        let mut p = ProcessFacts {
            exe: Some("/usr/bin/node".into()),
            argv: vec!["node".into(), "app.js".into()],
            cwd: Some("/app/".into()),
            ..Default::default()
        };
        assert_eq!(executable_paths(&p), vec!["/usr/bin/node", "/app/node"]);
        p.exe = None;
        p.argv = vec!["/opt/bin/app".into()];
        assert_eq!(executable_paths(&p), vec!["/opt/bin/app"]);
        p.argv = vec![];
        assert!(executable_paths(&p).is_empty());
    }

    /// An error's cause is in its message once: not repeated by a `source()` chain
    /// (`{:#}` is how the binaries print errors).
    #[test]
    fn causes_are_printed_once() {
        let e = anyhow::Error::new(ElfError::Open {
            path: "/bin/app".into(),
            cause: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        })
        .context("analysing container x");
        let text = format!("{e:#}");
        assert_eq!(
            text,
            "analysing container x: cannot open /bin/app: no such file"
        );
        let jar = anyhow::Error::new(crate::fingerprint::jar::JarError::Io {
            jar: "/a.jar".into(),
            cause: io::Error::other("boom"),
        });
        assert_eq!(format!("{jar:#}").matches("boom").count(), 1);
    }

    #[test]
    fn dynamic_section_gives_needed_libraries() {
        // On this host: a real dynamically linked binary, copied into a root.
        let (dir, root) = root();
        let exe = std::fs::read("/proc/self/exe").unwrap();
        write(dir.path(), "/bin/self", &exe);
        let elf = ElfBinary::open(&root, "/bin/self").unwrap();
        let dynamic = elf.dynamic().unwrap();
        assert!(
            dynamic.needed.iter().any(|n| n.starts_with("libc.so")),
            "{dynamic:?}"
        );
    }

    /// OS + Go/Node/Python detection for one container, on real binaries copied into a root.
    /// (What it costs is measured by `cargo bench -p scanner --bench scan`, not here.)
    #[test]
    fn detection_on_real_binaries() {
        use super::super::{go, node, os, python};
        let copies: &[(&str, &str, &str, &str)] = &[
            ("/usr/bin/node", "/usr/local/bin/node", "node", "Node.js v"),
            (
                "/usr/bin/python3.11",
                "/usr/bin/python3.11",
                "python3",
                "Python Python 3.11.",
            ),
            (
                "/usr/lib/go-1.19/bin/go",
                "/usr/local/bin/app",
                "app",
                "Golang go1.19",
            ),
        ];
        let (dir, root) = root();
        write(
            dir.path(),
            "/etc/os-release",
            b"ID=debian\nVERSION_ID=\"12\"\n",
        );
        for (host, inside, comm, expected) in copies {
            let bytes = std::fs::read(host).unwrap_or_else(|e| {
                panic!("{host}: {e} (bash scripts/install-test-deps.sh installs it)")
            });
            write(dir.path(), inside, &bytes);
            let process = ProcessFacts {
                comm: (*comm).to_owned(),
                exe: Some((*inside).to_owned()),
                argv: vec![(*comm).to_owned()],
                cwd: Some("/".into()),
                ..Default::default()
            };
            assert_eq!(os::detect(&root).map(|o| o.id).as_deref(), Some("debian"));
            let kind = go::detect(&root, &process)
                .or_else(|| node::detect(&root, &process))
                .or_else(|| python::detect(&root, &process))
                .map(|d| format!("{} {}", d.kind, d.version))
                .unwrap_or_default();
            assert!(kind.starts_with(expected), "{comm}: {kind:?}");
        }
    }
}
