//! Function code: a Lambda-style zip or a directory with the handler module at the
//! root, read into memory, checked, and packed into the guest's files archive.
use crate::error::WorkerError;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Lambda's limit on unzipped code size.
pub const MAX_CODE_BYTES: u64 = 250 * 1024 * 1024;

/// The files of a function, by path relative to its root (`/var/task`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionCode {
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Rejects absolute paths and `..` components (zip-slip).
fn clean_path(raw: &str) -> Result<Option<String>, WorkerError> {
    let raw = raw.replace('\\', "/");
    if raw.starts_with('/') {
        return Err(WorkerError::UnsafePath(raw));
    }
    let mut parts = Vec::new();
    for p in raw.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(WorkerError::UnsafePath(raw)),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

impl FunctionCode {
    /// Reads a zip file or a directory.
    pub fn load(path: &Path) -> Result<Self, WorkerError> {
        let io = |source| WorkerError::ReadCode {
            path: path.display().to_string(),
            source,
        };
        if path.is_dir() {
            let mut code = Self::default();
            let mut total = 0u64;
            walk(path, path, &mut code, &mut total)?;
            return Ok(code);
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_zip(&bytes)
    }

    /// Reads a zip archive held in memory (`Code.ZipFile`).
    pub fn from_zip(bytes: &[u8]) -> Result<Self, WorkerError> {
        Self::from_zip_capped(bytes, MAX_CODE_BYTES)
    }

    /// [`FunctionCode::from_zip`] with at most `max` bytes unpacked in total.
    ///
    /// 1. The declared sizes are summed first, so an honest bomb is refused before inflating.
    /// 2. Each entry is then read through a `take` of what is left of `max` (plus one byte to
    ///    detect overflow), so headers that lie about sizes cannot make it inflate, or hold,
    ///    more than `max + 1` bytes: the count is of bytes actually decompressed.
    pub fn from_zip_capped(bytes: &[u8], max: u64) -> Result<Self, WorkerError> {
        let mut zip =
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(WorkerError::BadZip)?;
        let mut declared = 0u64;
        for i in 0..zip.len() {
            let f = zip.by_index_raw(i).map_err(WorkerError::BadZip)?;
            declared = declared.saturating_add(f.size());
            if declared > max {
                return Err(WorkerError::CodeTooLarge {
                    size: declared,
                    max,
                });
            }
        }
        let mut code = Self::default();
        let mut total = 0u64;
        for i in 0..zip.len() {
            let f = zip.by_index(i).map_err(WorkerError::BadZip)?;
            if f.is_dir() {
                continue;
            }
            let Some(name) = clean_path(f.name())? else {
                continue;
            };
            let left = max - total;
            let mut data = Vec::with_capacity(f.size().min(left) as usize);
            f.take(left + 1)
                .read_to_end(&mut data)
                .map_err(|e| WorkerError::BadZip(e.into()))?;
            total += data.len() as u64;
            if total > max {
                return Err(WorkerError::CodeTooLarge { size: total, max });
            }
            code.files.insert(name, data);
        }
        Ok(code)
    }

    /// Checks that the handler's module exists (`a.b.fn` -> `a/b.py` or `a/b/__init__.py`).
    pub fn check_handler(&self, handler: &str) -> Result<(), WorkerError> {
        let (module, func) = handler
            .rsplit_once('.')
            .ok_or_else(|| WorkerError::BadHandler {
                handler: handler.into(),
            })?;
        if module.is_empty() || func.is_empty() {
            return Err(WorkerError::BadHandler {
                handler: handler.into(),
            });
        }
        let base = module.replace('.', "/");
        let candidates = [format!("{base}.py"), format!("{base}/__init__.py")];
        if candidates.iter().any(|c| self.files.contains_key(c)) {
            return Ok(());
        }
        Err(WorkerError::HandlerModuleMissing {
            module: module.into(),
            candidates: candidates.join(", "),
        })
    }

    /// A content hash of the code (stable across zip/dir forms).
    pub fn hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (name, data) in &self.files {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(&(data.len() as u64).to_le_bytes());
            h.update(data);
        }
        h.finalize().to_hex().to_string()
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    code: &mut FunctionCode,
    total: &mut u64,
) -> Result<(), WorkerError> {
    let io = |source| WorkerError::ReadCode {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, code, total)?;
        } else {
            let data = std::fs::read(&path).map_err(|source| WorkerError::ReadCode {
                path: path.display().to_string(),
                source,
            })?;
            *total += data.len() as u64;
            if *total > MAX_CODE_BYTES {
                return Err(WorkerError::CodeTooLarge {
                    size: *total,
                    max: MAX_CODE_BYTES,
                });
            }
            let rel = path
                .strip_prefix(root)
                .expect("walk stays below root")
                .to_string_lossy()
                .into_owned();
            if let Some(rel) = clean_path(&rel)? {
                code.files.insert(rel, data);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn test_zip_round_trip_and_handler_check() {
        let code = FunctionCode::from_zip(&zip_of(&[
            ("app.py", b"def handler(e, c): return e"),
            ("lib/util.py", b""),
        ]))
        .unwrap();
        assert_eq!(code.files.len(), 2);
        code.check_handler("app.handler").unwrap();
        code.check_handler("lib.util.f").unwrap();
    }

    #[test]
    fn test_missing_handler_module_is_a_clear_error() {
        let code = FunctionCode::from_zip(&zip_of(&[("other.py", b"")])).unwrap();
        let err = code.check_handler("app.handler").unwrap_err();
        assert!(
            err.to_string().contains("handler module \"app\" not found"),
            "{err}"
        );
        assert!(matches!(
            code.check_handler("nodot"),
            Err(WorkerError::BadHandler { .. })
        ));
    }

    #[test]
    fn test_zip_slip_is_refused() {
        let err = FunctionCode::from_zip(&zip_of(&[("../../etc/passwd", b"x")])).unwrap_err();
        assert!(matches!(err, WorkerError::UnsafePath(_)), "{err}");
    }

    #[test]
    fn test_garbage_zip_is_refused() {
        assert!(matches!(
            FunctionCode::from_zip(b"definitely not a zip"),
            Err(WorkerError::BadZip(_))
        ));
    }

    /// A zip whose one entry inflates to `real` bytes while its headers claim `claimed`.
    fn lying_zip(real: usize, claimed: u32) -> Vec<u8> {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("app.py", opts).unwrap();
        let block = vec![b'#'; 1 << 20];
        for _ in 0..real / block.len() {
            w.write_all(&block).unwrap();
        }
        let mut z = w.finish().unwrap().into_inner();
        // Local header: uncompressed size at +22; central directory entry: at +24.
        let local = 0;
        let central = z
            .windows(4)
            .position(|s| s == b"PK\x01\x02")
            .expect("central directory");
        let real32 = (real as u32).to_le_bytes();
        assert_eq!(&z[local + 22..local + 26], &real32);
        assert_eq!(&z[central + 24..central + 28], &real32);
        z[local + 22..local + 26].copy_from_slice(&claimed.to_le_bytes());
        z[central + 24..central + 28].copy_from_slice(&claimed.to_le_bytes());
        z
    }

    #[test]
    fn test_zip_bomb_with_lying_sizes_stops_at_the_cap() {
        // 64 MiB of inflated code in a ~64 KiB zip that claims 100 bytes; a 1 MiB cap.
        let bomb = lying_zip(64 << 20, 100);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let cap = 1 << 20;
        let err = FunctionCode::from_zip_capped(&bomb, cap).unwrap_err();
        match err {
            // Stopped one byte past the cap: it never inflated (or held) the rest.
            WorkerError::CodeTooLarge { size, max } => assert_eq!((size, max), (cap + 1, cap)),
            other => panic!("{other}"),
        }
        // The same bomb against the real 250 MB limit is refused too, not unpacked to 64 MiB
        // and accepted because its headers claim 100 bytes.
        let small = lying_zip(300 << 20, 100);
        assert!(matches!(
            FunctionCode::from_zip(&small),
            Err(WorkerError::CodeTooLarge { size, .. }) if size == MAX_CODE_BYTES + 1
        ));
        // Honest sizes over the cap are refused from the headers alone.
        let honest = lying_zip(2 << 20, 2 << 20);
        assert!(matches!(
            FunctionCode::from_zip_capped(&honest, cap),
            Err(WorkerError::CodeTooLarge { size, .. }) if size == 2 << 20
        ));
        // Under the cap, a lying header does not lose data.
        let ok = FunctionCode::from_zip_capped(&lying_zip(1 << 20, 100), 2 << 20).unwrap();
        assert_eq!(ok.files["app.py"].len(), 1 << 20);
    }

    #[test]
    fn test_hash_is_content_based() {
        let a = FunctionCode::from_zip(&zip_of(&[("app.py", b"1")])).unwrap();
        let b = FunctionCode::from_zip(&zip_of(&[("app.py", b"2")])).unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), a.clone().hash());
    }
}
