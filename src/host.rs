//! The host root: where checks find `/proc`, `/sys` and `/etc`.
//!
//! In production the root is `/`. In a container the host is mounted at, say, `/host` and the probe runs
//! with `--root /host`. In tests the root is a fixture directory. Checks never build an absolute path
//! themselves: every read goes through [`HostRoot`], so the whole probe can be pointed at another tree.
//!
//! Reads are bounded ([`MAX_FILE_BYTES`]): a /proc file is small, and a garbage fixture or a runaway
//! file must not make the probe allocate without limit.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest file a check will read. The largest legitimate input (`/proc/mdstat` with hundreds of
/// arrays) is a few hundred KiB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A directory that stands for `/` of the host being probed. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot(Arc<PathBuf>);

/// A failed read, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file does not exist.
    #[error("{}: not found", .path.display())]
    NotFound {
        /// Full path that was read.
        path: PathBuf,
    },
    /// The probe may not read it.
    #[error("{}: permission denied", .path.display())]
    PermissionDenied {
        /// Full path that was read.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{}: larger than {} bytes", .path.display(), MAX_FILE_BYTES)]
    TooLarge {
        /// Full path that was read.
        path: PathBuf,
    },
    /// The file is not text.
    #[error("{}: not valid UTF-8", .path.display())]
    NotUtf8 {
        /// Full path that was read.
        path: PathBuf,
    },
    /// Any other I/O error.
    #[error("{}: {source}", .path.display())]
    Io {
        /// Full path that was read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl ReadError {
    fn from_io(path: PathBuf, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::NotFound => ReadError::NotFound { path },
            io::ErrorKind::PermissionDenied => ReadError::PermissionDenied { path },
            _ => ReadError::Io { path, source },
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::NotFound { path }
            | ReadError::PermissionDenied { path }
            | ReadError::TooLarge { path }
            | ReadError::NotUtf8 { path }
            | ReadError::Io { path, .. } => path,
        }
    }

    /// True when the file simply does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::NotFound { .. })
    }
}

impl Default for HostRoot {
    fn default() -> Self {
        HostRoot::new("/")
    }
}

impl HostRoot {
    /// A root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        HostRoot(Arc::new(dir.into()))
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// `rel` (written as an absolute host path such as `/proc/meminfo`) under this root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.0.join(rel)
    }

    /// Reads a whole text file under the root.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<String, ReadError> {
        read_bounded(&self.path(rel))
    }

    /// Like [`HostRoot::read`], but a missing file is `Ok(None)`: for sources that are absent when a
    /// facility is not in use (no md driver, no conntrack module, no PSI).
    pub fn read_optional(&self, rel: impl AsRef<Path>) -> Result<Option<String>, ReadError> {
        match self.read(rel) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names of the entries of a directory under the root, sorted. A missing directory is `Ok(None)`.
    pub fn list_dir(&self, rel: impl AsRef<Path>) -> Result<Option<Vec<String>>, ReadError> {
        let path = self.path(rel);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ReadError::from_io(path, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ReadError::from_io(path.clone(), e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(Some(names))
    }

    /// Whether a path exists under the root.
    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        self.path(rel).exists()
    }
}

/// Reads at most [`MAX_FILE_BYTES`] of a text file.
pub fn read_bounded(path: &Path) -> Result<String, ReadError> {
    let file = File::open(path).map_err(|e| ReadError::from_io(path.to_path_buf(), e))?;
    let mut buf = Vec::with_capacity(4096);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ReadError::from_io(path.to_path_buf(), e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(buf).map_err(|_| ReadError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_joined_under_the_root() {
        let root = HostRoot::new("/host");
        assert_eq!(
            root.path("/proc/meminfo"),
            PathBuf::from("/host/proc/meminfo")
        );
        assert_eq!(
            root.path("proc/meminfo"),
            PathBuf::from("/host/proc/meminfo")
        );
        assert_eq!(
            HostRoot::default().path("/proc/x"),
            PathBuf::from("/proc/x")
        );
    }

    #[test]
    fn read_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let msg = root.read("/proc/meminfo").unwrap_err().to_string();
        assert!(msg.contains("proc/meminfo"), "{msg}");
        assert!(msg.ends_with("not found"), "{msg}");
        assert!(matches!(root.read_optional("/proc/meminfo"), Ok(None)));
    }

    #[test]
    fn binary_and_oversized_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(root.read("/bin"), Err(ReadError::NotUtf8 { .. })));
        let big = vec![b'a'; (MAX_FILE_BYTES + 10) as usize];
        std::fs::write(dir.path().join("big"), big).unwrap();
        assert!(matches!(root.read("/big"), Err(ReadError::TooLarge { .. })));
    }
}
