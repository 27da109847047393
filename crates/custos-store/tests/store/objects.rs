//! The object store against a real S3-compatible server (the s3s-fs that
//! `scripts/test.sh` starts): the health probe writes, reads back and deletes under the
//! configured prefix, and leaves nothing behind.

fn endpoint() -> String {
    std::env::var("CUSTOS_TEST_S3_ENDPOINT")
        .expect("CUSTOS_TEST_S3_ENDPOINT is unset: run the tests with scripts/test.sh, which starts an S3 server")
}

fn bucket() -> String {
    std::env::var("CUSTOS_TEST_S3_BUCKET").unwrap_or_else(|_| "custos-test".into())
}

#[tokio::test]
async fn the_probe_round_trips_on_s3_and_leaves_nothing() {
    let prefix = format!("probe-{}", uuid::Uuid::new_v4());
    let url = format!("s3://{}/{prefix}", bucket());
    let objects = custos_store::objects::open_s3(&url, Some(&endpoint())).unwrap();
    assert_eq!(objects.location(), url);
    objects.probe("i-test").await.unwrap();

    // Seen from the bucket's root: nothing is left under the prefix.
    let root = custos_store::objects::open_s3(&format!("s3://{}", bucket()), Some(&endpoint())).unwrap();
    use futures::TryStreamExt;
    let left: Vec<_> =
        root.store().list(Some(&object_store::path::Path::from(prefix.as_str()))).try_collect().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Write-once on S3: a plain write carries `If-None-Match: *`, which AWS S3 and the
/// server under test honour; streamed and copied writes check first.
#[tokio::test]
async fn s3_objects_are_written_once() {
    use custos_store::StoreError;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};
    let prefix = format!("worm-{}", uuid::Uuid::new_v4());
    let objects = custos_store::objects::open_s3(&format!("s3://{}/{prefix}", bucket()), Some(&endpoint())).unwrap();
    let path = Path::from("evidence/manifest.json");
    objects.put_new(&path, PutPayload::from_static(b"first")).await.unwrap();
    let again = objects.put_new(&path, PutPayload::from_static(b"second")).await.unwrap_err();
    assert!(matches!(again, StoreError::AlreadyExists { .. }), "the server refuses: {again}");

    // Streamed and copied writes check first, whatever the server supports.
    let again = objects.upload_new(&path, 5 * 1024 * 1024).await.unwrap_err();
    assert!(matches!(again, StoreError::AlreadyExists { .. }), "{again}");
    let source = Path::from("evidence/source");
    objects.put_new(&source, PutPayload::from_static(b"other")).await.unwrap();
    let again = objects.copy_new(&source, &path).await.unwrap_err();
    assert!(matches!(again, StoreError::AlreadyExists { .. }), "{again}");

    let read = objects.store().get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(read.as_ref(), b"first");
}
