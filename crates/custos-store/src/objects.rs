//! Objects: what is too large or too opaque for a row (evidence bundles, exports) lives
//! in an object store. By default a directory, `<data-dir>/objects`; with
//! `CUSTOS_OBJECT_STORE_URL=s3://bucket/prefix`, S3 or any S3-compatible server, with the
//! standard `AWS_*` variables (`AWS_ENDPOINT_URL` among them) for credentials and
//! endpoint. The location is chosen once at start-up, like the database.

use std::path::Path;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{StoreError, StoreResult};

/// Where health probes write (and then delete) their object.
const PROBE_PREFIX: &str = "_health";

/// The configured object store.
#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The location without credentials, for logs and `/health`.
    location: String,
    kind: ObjectsKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectsKind {
    Local,
    S3,
}

impl ObjectsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectsKind::Local => "local",
            ObjectsKind::S3 => "s3",
        }
    }
}

fn object_error(context: impl Into<String>) -> impl FnOnce(object_store::Error) -> StoreError {
    move |source| StoreError::Object { context: context.into(), source }
}

/// Opens the object store: `url` when given (`s3://bucket` or `s3://bucket/prefix`),
/// else `<data_dir>/objects`, created if missing. Makes no request.
pub fn open(url: Option<&str>, data_dir: &Path) -> StoreResult<Objects> {
    match url {
        None => {
            let dir = data_dir.join("objects");
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                context: format!("creating the object directory {}", dir.display()),
                source,
            })?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(object_error(format!("opening the object directory {}", dir.display())))?;
            Ok(Objects { store: Arc::new(store), location: dir.display().to_string(), kind: ObjectsKind::Local })
        }
        Some(url) => open_s3(url, None),
    }
}

/// Opens `s3://bucket/prefix` with the `AWS_*` variables, `endpoint` (when given)
/// replacing `AWS_ENDPOINT_URL`. Makes no request.
pub fn open_s3(url: &str, endpoint: Option<&str>) -> StoreResult<Objects> {
    let parsed = url::Url::parse(url).map_err(|e| {
        StoreError::Config(format!("CUSTOS_OBJECT_STORE_URL is not a URL ({e}); expected s3://bucket/prefix"))
    })?;
    if parsed.scheme() != "s3" {
        return Err(StoreError::Config(format!(
            "CUSTOS_OBJECT_STORE_URL must start with s3:// (got {}://); leave it unset for a local directory",
            parsed.scheme()
        )));
    }
    let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
        StoreError::Config("CUSTOS_OBJECT_STORE_URL names no bucket; expected s3://bucket/prefix".into())
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(StoreError::Config(
            "CUSTOS_OBJECT_STORE_URL must not carry credentials; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .into(),
        ));
    }
    let prefix = parsed.path().trim_matches('/').to_owned();
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    let endpoint = match endpoint {
        Some(endpoint) => {
            builder = builder.with_endpoint(endpoint);
            Some(endpoint.to_owned())
        }
        None => std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).ok(),
    };
    // A plain-HTTP endpoint (a local S3-compatible server) must be allowed explicitly.
    if endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    let s3 = builder.build().map_err(object_error("configuring S3 from CUSTOS_OBJECT_STORE_URL and AWS_*"))?;
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
    };
    let location = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
    Ok(Objects { store, location, kind: ObjectsKind::S3 })
}

impl Objects {
    /// The location without credentials: a directory, or `s3://bucket/prefix`.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn kind(&self) -> ObjectsKind {
        self.kind
    }

    /// The underlying store, for the modules that keep objects.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Proves the store writable: writes `_health/<name>`, reads it back and deletes it.
    /// `name` keeps replicas' probes apart (their instance ids).
    pub async fn probe(&self, name: &str) -> StoreResult<()> {
        let path = ObjectPath::from_iter([PROBE_PREFIX, name]);
        let body = format!("custos health probe {name}\n");
        self.store
            .put(&path, PutPayload::from(body.clone().into_bytes()))
            .await
            .map_err(object_error("writing the health probe object"))?;
        let read = self
            .store
            .get(&path)
            .await
            .map_err(object_error("reading the health probe object back"))?
            .bytes()
            .await
            .map_err(object_error("reading the health probe object back"))?;
        if read.as_ref() != body.as_bytes() {
            return Err(StoreError::Corrupt {
                what: "health probe object",
                detail: "read back different bytes than written".into(),
            });
        }
        self.store.delete(&path).await.map_err(object_error("deleting the health probe object"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_are_checked_before_any_request() {
        let err = |url: &str| open_s3(url, None).unwrap_err().to_string();
        assert!(err("gs://bucket").contains("must start with s3://"), "{}", err("gs://bucket"));
        assert!(err("not a url").contains("not a URL"));
        assert!(err("s3://key:secret@bucket/p").contains("must not carry credentials"));
        assert!(!err("s3://key:secret@bucket/p").contains("secret"));
    }

    #[tokio::test]
    async fn a_local_store_passes_its_probe_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let objects = open(None, dir.path()).unwrap();
        assert_eq!(objects.kind(), ObjectsKind::Local);
        objects.probe("i-1").await.unwrap();
        let probe_dir = dir.path().join("objects").join(PROBE_PREFIX);
        let left: Vec<_> = std::fs::read_dir(&probe_dir).map(|d| d.collect()).unwrap_or_default();
        assert!(left.is_empty(), "the probe object is deleted: {left:?}");
    }

    #[tokio::test]
    async fn an_unwritable_directory_fails_its_probe() {
        let dir = tempfile::tempdir().unwrap();
        let objects = open(None, dir.path()).unwrap();
        // A file where the probe's directory must go: the write cannot succeed, even as root.
        std::fs::write(dir.path().join("objects").join(PROBE_PREFIX), b"in the way").unwrap();
        let error = objects.probe("i-1").await.unwrap_err();
        assert_eq!(error.code(), "object_store", "{error}");
    }
}
