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
