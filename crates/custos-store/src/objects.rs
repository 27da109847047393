//! Objects: what is too large or too opaque for a row (evidence bundles, exports) lives
//! in an object store. By default a directory, `<data-dir>/objects`; with
//! `CUSTOS_OBJECT_STORE_URL=s3://bucket/prefix`, S3 or any S3-compatible server, with the
//! standard `AWS_*` variables (`AWS_ENDPOINT_URL` among them) for credentials and
//! endpoint. The location is chosen once at start-up, like the database.

mod lock;
mod observed;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3ConfigKey;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyMode, CopyOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};

use crate::error::{StoreError, StoreResult};
pub use lock::{LockMode, MAX_LOCK_PERIOD, ObjectLock, Retention};
pub use observed::ObjectsObserver;

/// Where health probes write (and then delete) their object.
const PROBE_PREFIX: &str = "_health";

/// The configured object store.
#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The location without credentials, for logs and `/health`.
    location: String,
    kind: ObjectsKind,
    /// The local directory, for the local backend.
    root: Option<PathBuf>,
    /// The bucket, for the S3 backend's Object Lock requests (`object_store` makes none).
    bucket: Option<Arc<lock::Bucket>>,
    /// Object Lock retention set on every object written, when configured.
    lock: Option<ObjectLock>,
    /// Told of every request, when set ([`Objects::observed`]).
    observer: Option<Arc<dyn ObjectsObserver>>,
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
            crate::create_private_dir(&dir).map_err(|source| StoreError::Io {
                context: format!("creating the object directory {}", dir.display()),
                source,
            })?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(object_error(format!("opening the object directory {}", dir.display())))?;
            Ok(Objects {
                store: Arc::new(store),
                location: dir.display().to_string(),
                kind: ObjectsKind::Local,
                root: Some(dir),
                bucket: None,
                lock: None,
                observer: None,
            })
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
    let allow_http = endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
    if allow_http {
        builder = builder.with_allow_http(true);
    }
    // object_store's own default region, when AWS_REGION is unset.
    let region = builder.get_config_value(&AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_owned());
    let bucket_url = bucket_url(&builder, bucket, &region);
    let s3 = builder.build().map_err(object_error("configuring S3 from CUSTOS_OBJECT_STORE_URL and AWS_*"))?;
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(s3.clone())
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(s3.clone(), prefix.as_str()))
    };
    let location = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
    let bucket = lock::Bucket::new(lock::S3Location { s3, bucket_url, region, prefix, allow_http })?;
    Ok(Objects {
        store,
        location,
        kind: ObjectsKind::S3,
        root: None,
        bucket: Some(Arc::new(bucket)),
        lock: None,
        observer: None,
    })
}

/// The bucket's URL as `object_store` addresses it: on the configured endpoint
/// (path-style unless virtual-hosted requests are configured), else on AWS.
fn bucket_url(builder: &object_store::aws::AmazonS3Builder, bucket: &str, region: &str) -> String {
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    let virtual_hosted =
        builder.get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
    match (endpoint, virtual_hosted) {
        (Some(endpoint), true) => endpoint.trim_end_matches('/').to_owned(),
        (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    }
}

impl Objects {
    /// The location without credentials: a directory, or `s3://bucket/prefix`.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn kind(&self) -> ObjectsKind {
        self.kind
    }

    /// Reports every request made from now on to `observer`, each in an
    /// `object_store` span: those of the underlying store, and custos's own Object Lock
    /// requests.
    pub fn observed(mut self, observer: Arc<dyn ObjectsObserver>) -> Self {
        let backend = self.kind.as_str();
        self.store = Arc::new(observed::Observed { inner: self.store, observer: observer.clone(), backend });
        self.observer = Some(observer);
        self
    }

    /// Times a request `object_store` does not make, as the wrapped store times its own.
    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        match &self.observer {
            Some(observer) => observed::timed(&**observer, self.kind.as_str(), operation, call).await,
            None => call.await,
        }
    }

    /// Sets S3 Object Lock retention on every object written from now on: `lock.mode`
    /// until `lock.period` after its write. Refused for the local directory, which has no
    /// such thing. Makes no request: [`Objects::check_object_lock`] checks the bucket.
    pub fn with_object_lock(mut self, lock: ObjectLock) -> StoreResult<Self> {
        if self.bucket.is_none() {
            return Err(StoreError::Config(
                "Object Lock needs S3 objects (CUSTOS_OBJECT_STORE_URL=s3://…); a local directory has no Object Lock"
                    .into(),
            ));
        }
        self.lock = Some(lock);
        Ok(self)
    }

    /// The retention set on every object written, if any.
    pub fn object_lock(&self) -> Option<ObjectLock> {
        self.lock
    }

    /// When Object Lock is configured, checks that the bucket has it enabled (S3's
    /// `GetObjectLockConfiguration`); nothing otherwise.
    pub async fn check_object_lock(&self) -> StoreResult<()> {
        match (&self.bucket, self.lock) {
            (Some(bucket), Some(_)) => self.timed("get_lock_configuration", bucket.check_lock()).await,
            _ => Ok(()),
        }
    }

    /// The Object Lock retention S3 reports for `path`'s current version, whether
    /// custos or a bucket default set it; `None` when it has none, and always on the
    /// local directory.
    pub async fn retention(&self, path: &ObjectPath) -> StoreResult<Option<Retention>> {
        match &self.bucket {
            Some(bucket) => self.timed("get_retention", bucket.retention(path)).await,
            None => Ok(None),
        }
    }

    /// The underlying store, for the modules that keep objects.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes an object that must not exist yet, and refuses one that does
    /// ([`StoreError::AlreadyExists`]): locally the file is published by a hard link,
    /// which fails on an existing name, then made read-only; on S3 the request carries
    /// `If-None-Match: *`, which the server must honour (AWS S3 does), and the new version
    /// is then locked when Object Lock is configured.
    pub async fn put_new(&self, path: &ObjectPath, payload: PutPayload) -> StoreResult<()> {
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        let written = self.store.put_opts(path, payload, options).await.map_err(|e| self.create_error(path, e))?;
        self.seal(path, &written).await
    }

    /// Starts a streamed write of a new object at a fresh `path` (a multipart upload:
    /// parts of `part_bytes`, at most two in flight). A multipart upload cannot be made
    /// conditional, so `path` is checked to be absent first and must be one no other
    /// writer picks (a new id in it). [`Objects::seal`] it once finished, with what its
    /// `finish` returned.
    pub async fn upload_new(&self, path: &ObjectPath, part_bytes: usize) -> StoreResult<WriteMultipart> {
        self.refuse_existing(path).await?;
        let upload =
            self.store.put_multipart(path).await.map_err(object_error(format!("starting the upload of {path}")))?;
        Ok(WriteMultipart::new_with_chunk_size(upload, part_bytes))
    }

    /// Copies an object to a new path, refusing one that exists: locally a hard link
    /// (no bytes copied; the file is read-only already), on S3 a server-side copy after
    /// checking `to` is absent, then locked when Object Lock is configured (a copy does
    /// not inherit its source's retention).
    pub async fn copy_new(&self, from: &ObjectPath, to: &ObjectPath) -> StoreResult<()> {
        match self.kind {
            ObjectsKind::Local => {
                let options = CopyOptions { mode: CopyMode::Create, ..Default::default() };
                self.store.copy_opts(from, to, options).await.map_err(|e| self.create_error(to, e))
            }
            ObjectsKind::S3 => {
                self.refuse_existing(to).await?;
                self.store.copy(from, to).await.map_err(object_error(format!("copying {from} to {to}")))?;
                // The copy's version is not reported: the current one is the copy, as
                // nothing else writes a fresh path.
                self.lock(to, None).await
            }
        }
    }

    /// Protects an object just written (`written` is what its write returned): a local
    /// file becomes read-only (0444); on S3, the version written is locked when Object
    /// Lock is configured, and nothing is done otherwise (a bucket default retention
    /// still applies).
    pub async fn seal(&self, path: &ObjectPath, written: &object_store::PutResult) -> StoreResult<()> {
        if self.kind == ObjectsKind::S3 {
            return self.lock(path, written.version.as_deref()).await;
        }
        let Some(root) = &self.root else { return Ok(()) };
        let file = root.join(path.as_ref());
        let mut permissions = std::fs::metadata(&file).map(|m| m.permissions());
        if let Ok(permissions) = permissions.as_mut() {
            // 0444 on Unix: nobody writes it, though its owner may still delete it.
            permissions.set_readonly(true);
        }
        permissions
            .and_then(|permissions| std::fs::set_permissions(&file, permissions))
            .map_err(|source| StoreError::Io { context: format!("making {} read-only", file.display()), source })
    }

    /// Opens an object for reading from blocking code (a `spawn_blocking` task): a local
    /// object is its file, read directly; a remote one streams, each chunk awaited on
    /// `runtime`.
    pub fn blocking_reader(
        &self,
        runtime: &tokio::runtime::Handle,
        path: &ObjectPath,
    ) -> StoreResult<Box<dyn std::io::Read + Send>> {
        let got = runtime.block_on(self.store.get(path)).map_err(object_error(format!("reading {path}")))?;
        Ok(match got.payload {
            object_store::GetResultPayload::File(file, _) => Box::new(file),
            object_store::GetResultPayload::Stream(stream) => {
                Box::new(StreamReader { runtime: runtime.clone(), stream, chunk: bytes::Bytes::new() })
            }
        })
    }

    /// Whether custos mirrors its holds into S3 legal holds: when Object Lock is
    /// configured (a bucket without it has no legal holds).
    pub fn mirrors_holds(&self) -> bool {
        self.bucket.is_some() && self.lock.is_some()
    }

    /// Sets (`on`) or clears the S3 legal hold of the object at `path`; nothing unless
    /// [`Objects::mirrors_holds`].
    pub async fn set_legal_hold(&self, path: &ObjectPath, on: bool) -> StoreResult<()> {
        match &self.bucket {
            Some(bucket) if self.lock.is_some() => self.timed("put_legal_hold", bucket.legal_hold(path, on)).await,
            _ => Ok(()),
        }
    }

    /// Sets or clears the legal hold of every object under `prefix`; how many.
    pub async fn set_legal_holds_under(&self, prefix: &ObjectPath, on: bool) -> StoreResult<u64> {
        use futures::TryStreamExt;
        if !self.mirrors_holds() {
            return Ok(0);
        }
        let mut listing = self.store.list(Some(prefix));
        let mut count = 0;
        while let Some(object) = listing.try_next().await.map_err(object_error(format!("listing {prefix}")))? {
            self.set_legal_hold(&object.location, on).await?;
            count += 1;
        }
        Ok(count)
    }

    /// The names directly under `prefix` (its "directories"), sorted.
    pub async fn children(&self, prefix: &ObjectPath) -> StoreResult<Vec<String>> {
        let listed =
            self.store.list_with_delimiter(Some(prefix)).await.map_err(object_error(format!("listing {prefix}")))?;
        let mut names: Vec<String> =
            listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        names.sort();
        Ok(names)
    }

    async fn lock(&self, path: &ObjectPath, version: Option<&str>) -> StoreResult<()> {
        match (&self.bucket, self.lock) {
            (Some(bucket), Some(lock)) => {
                self.timed("put_retention", bucket.retain(lock, path, version)).await.map(drop)
            }
            _ => Ok(()),
        }
    }

    async fn refuse_existing(&self, path: &ObjectPath) -> StoreResult<()> {
        match self.store.head(path).await {
            Ok(_) => Err(StoreError::AlreadyExists { what: "object", id: path.to_string() }),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error(format!("checking that {path} is new"))(e)),
        }
    }

    fn create_error(&self, path: &ObjectPath, error: object_store::Error) -> StoreError {
        match error {
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                StoreError::AlreadyExists { what: "object", id: path.to_string() }
            }
            other => object_error(format!("writing {path}"))(other),
        }
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

/// A blocking reader over an object's byte stream.
struct StreamReader {
    runtime: tokio::runtime::Handle,
    stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl std::io::Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use futures::StreamExt;
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
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

    /// Object Lock requests go where `object_store` sends its own (its builder's rules).
    #[test]
    fn lock_requests_address_the_bucket_as_object_store_does() {
        use object_store::aws::AmazonS3Builder;
        let aws = AmazonS3Builder::new().with_bucket_name("evidence");
        assert_eq!(bucket_url(&aws, "evidence", "eu-west-1"), "https://s3.eu-west-1.amazonaws.com/evidence");
        let hosted = AmazonS3Builder::new().with_virtual_hosted_style_request(true);
        assert_eq!(bucket_url(&hosted, "evidence", "eu-west-1"), "https://evidence.s3.eu-west-1.amazonaws.com");
        let minio = AmazonS3Builder::new().with_endpoint("http://127.0.0.1:9000/");
        assert_eq!(bucket_url(&minio, "evidence", "us-east-1"), "http://127.0.0.1:9000/evidence");
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
    async fn local_objects_are_written_once_and_read_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let objects = open(None, dir.path()).unwrap();
        let path = ObjectPath::from("tenants/acme/evidence/c/b/manifest.json");
        objects.put_new(&path, PutPayload::from_static(b"first")).await.unwrap();
        let again = objects.put_new(&path, PutPayload::from_static(b"second")).await.unwrap_err();
        assert!(matches!(again, StoreError::AlreadyExists { .. }), "{again}");
        let file = dir.path().join("objects").join(path.as_ref());
        assert_eq!(std::fs::read(&file).unwrap(), b"first");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o444);

        let copy = ObjectPath::from("tenants/acme/evidence/c/b2/artifacts/x");
        objects.copy_new(&path, &copy).await.unwrap();
        let again = objects.copy_new(&path, &copy).await.unwrap_err();
        assert!(matches!(again, StoreError::AlreadyExists { .. }), "{again}");

        let streamed = ObjectPath::from("tenants/acme/evidence/c/uploads/u1");
        let mut upload = objects.upload_new(&streamed, 5 * 1024 * 1024).await.unwrap();
        upload.write(b"streamed");
        let written = upload.finish().await.unwrap();
        objects.seal(&streamed, &written).await.unwrap();
        let again = objects.upload_new(&streamed, 5 * 1024 * 1024).await.unwrap_err();
        assert!(matches!(again, StoreError::AlreadyExists { .. }), "{again}");
        let file = dir.path().join("objects").join(streamed.as_ref());
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o444);
    }

    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<(&'static str, &'static str, &'static str)>>);

    impl ObjectsObserver for Recorder {
        fn observe(&self, backend: &'static str, operation: &'static str, outcome: &'static str, seconds: f64) {
            assert!(seconds >= 0.0);
            self.0.lock().unwrap().push((backend, operation, outcome));
        }
    }

    #[tokio::test]
    async fn every_request_is_reported_with_its_outcome() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::default());
        let objects = open(None, dir.path()).unwrap().observed(recorder.clone());
        let path = ObjectPath::from("tenants/acme/evidence/c/b/manifest.json");
        objects.put_new(&path, PutPayload::from_static(b"first")).await.unwrap();
        objects.put_new(&path, PutPayload::from_static(b"again")).await.unwrap_err();
        objects.upload_new(&path, 5 * 1024 * 1024).await.unwrap_err();
        objects.store().get(&path).await.unwrap().bytes().await.unwrap();
        let listed: Vec<_> = objects.store().list(Some(&ObjectPath::from("tenants"))).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        objects.probe("i-1").await.unwrap();
        let seen = recorder.0.lock().unwrap().clone();
        let expected = [
            ("put", "ok"),
            ("put", "exists"),
            ("head", "ok"),
            ("get", "ok"),
            ("list", "ok"),
            ("put", "ok"),
            ("get", "ok"),
            ("delete", "ok"),
        ];
        let seen: Vec<_> = seen
            .iter()
            .map(|(backend, operation, outcome)| {
                assert_eq!(*backend, "local");
                (*operation, *outcome)
            })
            .collect();
        assert_eq!(seen, expected);
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
