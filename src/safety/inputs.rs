//! Input files are checked with `stat` before they are opened: opening a FIFO blocks until a
//! writer appears (forever, for a hostile input) and a character device such as `/dev/zero`
//! reads as an endless stream, so anything but a regular file is refused by name. A file read
//! whole into memory is capped ([`MAX_INPUT_BYTES`]): a larger one is refused with its size
//! before it is read, and a file that grows while read stops at the cap (issue 27 case 5).

use std::io::{self, Read as _};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// `Ok` when `path` (after following symlinks) is a regular file; otherwise an error saying what
/// it is instead. The file is not opened.
pub fn check_regular(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    let ft = meta.file_type();
    let what = if ft.is_file() {
        return Ok(());
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("is {what}, not a regular file")))
}

/// The largest text input read whole (data sets, task files, item logs, journals): 256 MiB,
/// thirty times the largest data file the tool ships for.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Reads a whole regular file of at most [`MAX_INPUT_BYTES`] (refusing FIFOs and devices
/// first, see [`check_regular`]).
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    read_capped(path, MAX_INPUT_BYTES)
}

/// Reads a whole regular file of at most `max` bytes; a larger one is an `InvalidData` error
/// saying its size and the cap, raised before anything is read.
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    check_regular(path)?;
    let too_big = |len: u64| io::Error::new(io::ErrorKind::InvalidData, format!("is {len} bytes, more than the {} MiB an input read whole may have", max >> 20));
    let len = std::fs::metadata(path)?.len();
    if len > max {
        return Err(too_big(len));
    }
    let mut out = Vec::with_capacity(len as usize);
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_big(out.len() as u64));
    }
    Ok(out)
}

/// Reads a whole regular file as UTF-8 text; invalid UTF-8 is an `InvalidData` error naming
/// the line (1-based) and the byte offset where it starts.
pub fn read_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular(path)?).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|b| **b == b'\n').count();
        let column = 1 + at - bytes[..at].iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        io::Error::new(io::ErrorKind::InvalidData, format!("not valid UTF-8 at line {line}, column {column} (byte {at})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_opening() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Opening the FIFO would block this test forever; the check must not.
        assert!(check_regular(&fifo).unwrap_err().to_string().contains("FIFO"));
        assert!(check_regular(Path::new("/dev/zero")).unwrap_err().to_string().contains("character device"));
        assert!(check_regular(d.path()).unwrap_err().to_string().contains("directory"));
        std::fs::write(d.path().join("f"), b"x").unwrap();
        assert!(check_regular(&d.path().join("f")).is_ok());
        assert_eq!(check_regular(&d.path().join("missing")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_over_the_cap_is_refused_before_reading() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("big.jsonl");
        std::fs::File::create(&f).unwrap().set_len(MAX_INPUT_BYTES + 1).unwrap();
        let err = read_regular(&f).unwrap_err().to_string();
        assert!(err.contains(&format!("is {} bytes", MAX_INPUT_BYTES + 1)) && err.contains("256 MiB"), "{err}");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_capped(&f, 10).unwrap(), b"0123456789");
        assert!(read_capped(&f, 9).is_err());
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t.txt");
        std::fs::write(&f, b"one\ntwo\nth\xffree\n").unwrap();
        assert_eq!(read_text(&f).unwrap_err().to_string(), "not valid UTF-8 at line 3, column 3 (byte 10)");
        std::fs::write(&f, "fine\n").unwrap();
        assert_eq!(read_text(&f).unwrap(), "fine\n");
    }
}
