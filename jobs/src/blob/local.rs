//! Blobs as files in a folder: `{root}/{key}`.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use super::{BlobError, BlobStore};

/// The local-folder adapter of [`BlobStore`].
#[derive(Clone, Debug)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file that holds `key`. Keys never escape the root.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        let relative = Path::new(key);
        if key.is_empty()
            || relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(BlobError::Rejected(
                format!("{key:?} is not a valid blob key").into(),
            ));
        }
        Ok(self.root.join(relative))
    }
}

fn io(path: &Path, source: std::io::Error) -> BlobError {
    BlobError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half
/// a blob.
async fn write_atomically(
    path: &Path,
    write: impl AsyncFnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), BlobError> {
    let dir = path.parent().expect("a blob path has a parent");
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
        std::process::id()
    ));
    if let Err(e) = write(&tmp).await {
        // Nothing half-written stays behind.
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io(&tmp, e));
    }
    tokio::fs::rename(&tmp, path).await.map_err(|e| io(path, e))
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        _content_type: &str,
    ) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        write_atomically(&path, async |tmp: &Path| {
            tokio::fs::write(tmp, &bytes).await
        })
        .await
    }

    async fn put_file(
        &self,
        key: &str,
        source: &Path,
        _content_type: &str,
    ) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        tokio::fs::metadata(source)
            .await
            .map_err(|e| io(source, e))?;
        write_atomically(&path, async |tmp: &Path| {
            tokio::fs::copy(source, tmp).await.map(drop)
        })
        .await
    }

    async fn put_file_range(
        &self,
        key: &str,
        source: &Path,
        range: std::ops::Range<u64>,
        _content_type: &str,
    ) -> Result<(), BlobError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.path_of(key)?;
        let mut file = tokio::fs::File::open(source)
            .await
            .map_err(|e| io(source, e))?;
        file.seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(|e| io(source, e))?;
        let len = range.end.saturating_sub(range.start);
        write_atomically(&path, async |tmp: &Path| {
            let mut out = tokio::fs::File::create(tmp).await?;
            let copied = tokio::io::copy(&mut file.take(len), &mut out).await?;
            if copied < len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} ends before byte {}", source.display(), range.end),
                ));
            }
            out.sync_data().await
        })
        .await
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io(&dir, e))?;
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        // `/` between folders; a `\` in a name stays a `\`.
                        let key = rel
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy())
                            .collect::<Vec<_>>()
                            .join("/");
                        if key.starts_with(&prefix)
                            && !key.rsplit('/').next().unwrap_or("").starts_with('.')
                        {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| BlobError::Unavailable(e.to_string().into()))?
    }

    fn locate(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path());
        blobs
            .put_bytes("jobs/a/log.txt", b"hi".to_vec(), "text/plain")
            .await
            .unwrap();
        blobs
            .put_bytes("jobs/a/output/x.txt", b"x".to_vec(), "text/plain")
            .await
            .unwrap();
        assert_eq!(
            blobs.get_bytes("jobs/a/log.txt").await.unwrap().unwrap(),
            b"hi"
        );
        assert_eq!(blobs.get_bytes("jobs/b/log.txt").await.unwrap(), None);
        assert_eq!(
            blobs.list("jobs/a/output/").await.unwrap(),
            vec!["jobs/a/output/x.txt"]
        );
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        let blobs = LocalBlobs::new("/tmp/x");
        assert!(blobs.path_of("../etc/passwd").is_err());
        assert!(blobs.path_of("/etc/passwd").is_err());
        assert!(blobs.path_of("jobs/a/./b").is_ok());
    }
}
