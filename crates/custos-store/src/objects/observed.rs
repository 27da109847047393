//! Every object store request custos makes, timed and traced in one place: an
//! [`ObjectStore`] that wraps the configured one and reports each call to an
//! [`ObjectsObserver`] (the server's metrics), inside an `object_store` span.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};
use tracing::Instrument;

/// Told of each finished object store request: what it was (`put`, `get`,
/// `put_retention`, …), how it ended (`ok`, `not_found`, `exists` or `error`), and how
/// long it took.
pub trait ObjectsObserver: fmt::Debug + Send + Sync {
    fn observe(&self, backend: &'static str, operation: &'static str, outcome: &'static str, seconds: f64);
}

/// How a request ended: `ok`; `not_found` and `exists` (a normal answer: a path checked
/// to be new, a write-once refusal); or `error`, when the store failed.
pub(crate) trait Outcome {
    fn outcome(&self) -> &'static str;
}

impl<T> Outcome for Result<T> {
    fn outcome(&self) -> &'static str {
        match self {
            Ok(_) => "ok",
            Err(object_store::Error::NotFound { .. }) => "not_found",
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => "exists",
            Err(_) => "error",
        }
    }
}

impl<T> Outcome for crate::StoreResult<T> {
    fn outcome(&self) -> &'static str {
        if self.is_ok() { "ok" } else { "error" }
    }
}

/// Times `call` as `operation` in an `object_store` span and tells `observer`.
pub(crate) async fn timed<R: Outcome>(
    observer: &dyn ObjectsObserver,
    backend: &'static str,
    operation: &'static str,
    call: impl Future<Output = R>,
) -> R {
    let span = tracing::debug_span!("object_store", otel.name = operation, otel.kind = "client", operation, backend);
    let started = Instant::now();
    let result = call.instrument(span).await;
    observer.observe(backend, operation, result.outcome(), started.elapsed().as_secs_f64());
    result
}

#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) inner: Arc<dyn ObjectStore>,
    pub(crate) observer: Arc<dyn ObjectsObserver>,
    pub(crate) backend: &'static str,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Observed({})", self.inner)
    }
}

impl Observed {
    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        timed(&*self.observer, self.backend, operation, call).await
    }
}

#[async_trait::async_trait]
impl ObjectStore for Observed {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.timed("put", self.inner.put_opts(location, payload, opts)).await
    }

    /// Times starting the upload; its parts and completion are the upload's own.
    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.timed("put_multipart", self.inner.put_multipart_opts(location, opts)).await
    }

    /// Times the request up to the answer's headers; the body streams afterwards.
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = if options.head { "head" } else { "get" };
        self.timed(operation, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.timed("get_ranges", self.inner.get_ranges(location, ranges)).await
    }

    /// Each deletion is reported when the stream yields it, timed from the previous one.
    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let (observer, backend) = (self.observer.clone(), self.backend);
        let mut last = Instant::now();
        self.inner
            .delete_stream(locations)
            .inspect(move |result| {
                observer.observe(backend, "delete", result.outcome(), last.elapsed().as_secs_f64());
                last = Instant::now();
            })
            .boxed()
    }

    /// Reported once the listing ends (all its pages), or is dropped unfinished.
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        Box::pin(TimedList {
            inner: self.inner.list(prefix),
            observer: Some(self.observer.clone()),
            backend: self.backend,
            started: Instant::now(),
            outcome: "ok",
        })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.timed("list", self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.timed("copy", self.inner.copy_opts(from, to, options)).await
    }
}

/// A listing that reports itself when it ends.
struct TimedList {
    inner: BoxStream<'static, Result<ObjectMeta>>,
    /// Taken when reported.
    observer: Option<Arc<dyn ObjectsObserver>>,
    backend: &'static str,
    started: Instant,
    outcome: &'static str,
}

impl TimedList {
    fn report(&mut self) {
        if let Some(observer) = self.observer.take() {
            observer.observe(self.backend, "list", self.outcome, self.started.elapsed().as_secs_f64());
        }
    }
}

impl futures::Stream for TimedList {
    type Item = Result<ObjectMeta>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            std::task::Poll::Ready(Some(Err(_))) => self.outcome = "error",
            std::task::Poll::Ready(None) => self.report(),
            _ => {}
        }
        polled
    }
}

impl Drop for TimedList {
    fn drop(&mut self) {
        self.report();
    }
}
