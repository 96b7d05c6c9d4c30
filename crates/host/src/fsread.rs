use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file")]
    NotRegular { path: PathBuf },
}

impl ReadError {
    pub fn io(path: &Path, source: std::io::Error) -> ReadError {
        ReadError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied)
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Open a regular file for reading. Opened non-blocking so a FIFO cannot stall the run;
/// character devices and FIFOs are refused (a `/dev/zero` would otherwise fill any cap for
/// nothing). /proc files are regular files of size 0 and open normally.
pub fn open_regular(path: &Path) -> Result<(File, std::fs::Metadata), ReadError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| ReadError::io(path, source))?;
    let meta = file
        .metadata()
        .map_err(|source| ReadError::io(path, source))?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok((file, meta))
}

/// Read at most `max` bytes of a regular file (see `open_regular`).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let (file, meta) = open_regular(path)?;
    // /proc files report size 0: without room up front, read_to_end starts with a 32-byte
    // probe and grows, several reads for a 300-byte /proc/N/stat. One page is one read.
    let room = match meta.len() {
        0 => 4096,
        n => n.saturating_add(1),
    };
    let mut buf = Vec::with_capacity(usize::try_from(room.min(max)).unwrap_or(4096));
    File::take(file, max)
        .read_to_end(&mut buf)
        .map_err(|source| ReadError::io(path, source))?;
    Ok(buf)
}

/// A file of a process's /proc directory (`stat`, `cmdline`, `status`, `cgroup`) read whole
/// in the fewest syscalls: open, a read of a page, close. The table of every process reads two
/// per process, and `read_bounded`'s fstat (which says nothing here: size 0, always regular)
/// and its read that finds the end were two of its five. Such files are generated on read,
/// so a read shorter than asked is the end. Non-blocking and capped at `max` like
/// `read_bounded`; for other files use that, which refuses what is not a regular file.
pub fn read_proc_file(path: &Path, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| ReadError::io(path, source))?;
    let mut buf = vec![0u8; max.min(4096)];
    let mut len = 0;
    loop {
        let n = match file.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(ReadError::io(path, source)),
        };
        len += n;
        if len < buf.len() || buf.len() >= max {
            break;
        }
        buf.resize(buf.len().saturating_mul(2).min(max), 0);
    }
    buf.truncate(len);
    Ok(buf)
}

/// `read_bounded`, decoded lossily: host files may hold any bytes.
pub fn read_to_string_bounded(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read_bounded(path, max)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proc_file_is_read_whole_and_capped() {
        let me = read_proc_file(Path::new("/proc/self/stat"), 64 * 1024).expect("own stat");
        let text = String::from_utf8_lossy(&me);
        assert!(
            text.starts_with(&format!("{} (", std::process::id())),
            "{text}"
        );
        assert!(text.ends_with('\n'), "read to the end: {text}");
        // Longer than the first page: read on to the end, or to the cap.
        let dir = tempfile::tempdir().expect("temp dir");
        let long = dir.path().join("environ");
        std::fs::write(&long, vec![b'x'; 10_000]).expect("write");
        assert_eq!(
            read_proc_file(&long, 64 * 1024).expect("read").len(),
            10_000
        );
        assert_eq!(read_proc_file(&long, 5_000).expect("read").len(), 5_000);
        assert_eq!(read_proc_file(&long, 4_096).expect("read").len(), 4_096);
        assert!(read_proc_file(&dir.path().join("gone"), 10)
            .expect_err("missing")
            .is_not_found());
    }

    #[test]
    fn caps_the_bytes_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'x'; 10_000]).expect("write");
        assert_eq!(read_bounded(&p, 100).expect("read").len(), 100);
        assert_eq!(read_bounded(&p, 1 << 20).expect("read").len(), 10_000);
    }

    #[test]
    fn refuses_devices_and_fifos() {
        let err = read_bounded(Path::new("/dev/zero"), 10).expect_err("device");
        assert!(matches!(err, ReadError::NotRegular { .. }), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("cstring");
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_bounded(&fifo, 10).expect_err("fifo");
        assert!(matches!(err, ReadError::NotRegular { .. }), "{err}");
    }

    #[test]
    fn reads_proc_files_of_size_zero() {
        let s = read_to_string_bounded(Path::new("/proc/self/status"), 64 * 1024).expect("read");
        assert!(s.contains("Pid:"));
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = read_bounded(Path::new("/nonexistent/x"), 10).expect_err("missing");
        assert!(err.is_not_found());
    }
}
