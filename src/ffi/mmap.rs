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
