//! Read-only memory maps of input files. Mapping is `unsafe` in memmap2 because another process
//! could change the file underneath; it lives here so the crate's `unsafe` stays in `ffi`.

use std::fs::File;

use memmap2::Mmap;

/// Maps `file` read-only. The input model is never written through this map.
pub fn map_read_only(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only. If another process truncates or rewrites the file while it
    // is mapped, reads see other bytes (or fault); every consumer validates what it reads, and
    // mathneuro itself never writes to an input file (outputs go to a new file and are renamed).
    unsafe { Mmap::map(file) }
}

/// Drops this process's mapping of the whole pages inside `range` of `map` (`madvise`
/// `MADV_DONTNEED`), so a tensor that has been read no longer counts in the resident set. The
/// file's pages stay in the page cache, so a later read of them refaults without disk I/O and
/// sees the same bytes. Pages shared with bytes outside `range` are kept. Failure is ignored:
/// the only cost of keeping pages mapped is memory.
pub fn release(map: &Mmap, range: std::ops::Range<usize>) {
    // 4 KiB pages (x86-64, most arm64): on a system with larger pages memmap2 widens the range
    // to whole pages, which at worst drops a neighbour's page, refaulted from the cache if read.
    let page = 4096;
    let start = range.start.div_ceil(page) * page;
    let end = (range.end.min(map.len()) / page) * page;
    if end <= start {
        return;
    }
    // SAFETY: the map is a read-only shared file mapping, so MADV_DONTNEED only drops page-table
    // entries: the next access refaults the same file bytes from the page cache (no zero-fill,
    // which happens only for private or anonymous mappings). No reference into the map becomes
    // invalid; at worst a concurrent reader of these pages takes a minor fault.
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
}
