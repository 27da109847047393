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

/// The moto S3 emulator `scripts/test.sh` starts for Object Lock (s3s-fs has none).
fn lock_endpoint() -> String {
    std::env::var("CUSTOS_TEST_S3_LOCK_ENDPOINT")
        .expect("CUSTOS_TEST_S3_LOCK_ENDPOINT is unset: run the tests with scripts/test.sh, which starts moto's S3")
}

fn lock_bucket(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| panic!("{variable} is unset: run the tests with scripts/test.sh"))
}

/// What boto3, an independent S3 client, reads of each key's newest version: its lock
/// mode, retain-until date (Unix seconds), and whether deleting that version is refused.
fn read_locks(bucket: &str, keys: &[String]) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys, boto3, botocore
endpoint, bucket, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
out = {}
for key in keys:
    head = s3.head_object(Bucket=bucket, Key=key)
    until = head.get("ObjectLockRetainUntilDate")
    try:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
        deleted = True
    except botocore.exceptions.ClientError as e:
        deleted = e.response["Error"]["Code"]
    out[key] = {"mode": head.get("ObjectLockMode"), "until": until and until.timestamp(), "delete": deleted}
print(json.dumps(out))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", SCRIPT, &lock_endpoint(), bucket])
        .args(keys)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "boto3: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every way custos writes an object (a plain write, a streamed upload, a copy) is
/// followed by a retention on the version written, under the store's prefix; an
/// independent client sees the mode and date, and S3 refuses to delete the version.
#[tokio::test]
async fn object_lock_retains_every_version_custos_writes() {
    use custos_store::objects::{LockMode, ObjectLock};
    use object_store::PutPayload;
    use object_store::path::Path;
    let bucket = lock_bucket("CUSTOS_TEST_S3_LOCK_BUCKET");
    let prefix = format!("lock-{}", uuid::Uuid::new_v4());
    let url = format!("s3://{bucket}/{prefix}");
    let lock = ObjectLock { mode: LockMode::Compliance, period: std::time::Duration::from_secs(86_400) };
    let objects = custos_store::objects::open_s3(&url, Some(&lock_endpoint())).unwrap().with_object_lock(lock).unwrap();
    assert_eq!(objects.object_lock(), Some(lock));
    objects.check_object_lock().await.unwrap();

    let put = Path::from("evidence/c/b1/manifest.json");
    objects.put_new(&put, PutPayload::from_static(b"{}")).await.unwrap();
    let uploaded = Path::from("evidence/c/uploads/u1");
    let mut upload = objects.upload_new(&uploaded, 5 * 1024 * 1024).await.unwrap();
    upload.write(b"streamed artifact");
    let written = upload.finish().await.unwrap();
    objects.seal(&uploaded, &written).await.unwrap();
    let copied = Path::from("evidence/c/b1/artifacts/u1");
    objects.copy_new(&uploaded, &copied).await.unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();

    // Without Object Lock configured, the same bucket leaves a new object unlocked: the
    // retention above is custos's doing, not a bucket default.
    let plain = custos_store::objects::open_s3(&url, Some(&lock_endpoint())).unwrap();
    let unlocked = Path::from("evidence/c/b2/manifest.json");
    plain.put_new(&unlocked, PutPayload::from_static(b"{}")).await.unwrap();

    let keys: Vec<String> = [&put, &uploaded, &copied, &unlocked].iter().map(|p| format!("{prefix}/{p}")).collect();
    let locks = read_locks(&bucket, &keys);
    for key in &keys[..3] {
        let seen = &locks[key];
        assert_eq!(seen["mode"], "COMPLIANCE", "{key}: {seen}");
        let until = seen["until"].as_f64().unwrap();
        assert!((until - (before + 86_400.0)).abs() < 120.0, "{key}: retained until {until}, written at {before}");
        assert_eq!(seen["delete"], "AccessDenied", "{key}: the locked version cannot be deleted: {seen}");
    }
    let seen = &locks[&keys[3]];
    assert!(seen["mode"].is_null() && seen["delete"] == true, "an object written without a lock: {seen}");

    // custos reads the retention back as S3 reports it.
    let retention = objects.retention(&copied).await.unwrap().expect("the copy is locked");
    assert_eq!(retention.mode.as_deref(), Some("compliance"));
    assert!(!retention.legal_hold, "{retention:?}");
    let until = retention.retain_until.as_deref().unwrap();
    let until = time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{retention:?}: {e}"));
    assert!((until.unix_timestamp() as f64 - (before + 86_400.0)).abs() < 120.0, "{retention:?}");
    // Reading needs no lock configured: a store opened without one sees it too.
    let seen = plain.retention(&put).await.unwrap().expect("the manifest is locked");
    assert_eq!(seen.mode.as_deref(), Some("compliance"), "{seen:?}");

    // A legal hold, on and off; only a store with Object Lock configured sets one.
    objects.set_legal_hold(&put, true).await.unwrap();
    assert!(objects.retention(&put).await.unwrap().unwrap().legal_hold);
    plain.set_legal_hold(&put, false).await.unwrap();
    assert!(objects.retention(&put).await.unwrap().unwrap().legal_hold, "plain sets nothing");
    assert_eq!(objects.set_legal_holds_under(&Path::from("evidence/c"), false).await.unwrap(), 3);
    assert!(!objects.retention(&put).await.unwrap().unwrap().legal_hold);
    assert_eq!(objects.children(&Path::from("evidence/c")).await.unwrap(), ["b1", "uploads"]);
    // The unlocked object's only version was deleted above: S3 has nothing to report.
    let error = plain.retention(&unlocked).await.unwrap_err().to_string();
    assert!(error.contains("404"), "{error}");
}

/// A bucket created without Object Lock is found out before anything is written, and a
/// write there fails rather than leave an unlocked object unreported.
#[tokio::test]
async fn a_bucket_without_object_lock_is_refused() {
    use custos_store::objects::ObjectLock;
    use object_store::PutPayload;
    let bucket = lock_bucket("CUSTOS_TEST_S3_NOLOCK_BUCKET");
    let lock: ObjectLock = "governance:1h".parse().unwrap();
    let objects = custos_store::objects::open_s3(&format!("s3://{bucket}/p"), Some(&lock_endpoint()))
        .unwrap()
        .with_object_lock(lock)
        .unwrap();
    let error = objects.check_object_lock().await.unwrap_err().to_string();
    assert!(error.contains("no Object Lock configuration"), "{error}");
    let path = object_store::path::Path::from(format!("x-{}", uuid::Uuid::new_v4()));
    let error = objects.put_new(&path, PutPayload::from_static(b"x")).await.unwrap_err();
    assert_eq!(error.code(), "object_store");
    assert!(error.to_string().contains("InvalidRequest"), "S3's own reason is kept: {error}");
}

/// s3s-fs checks every request's SigV4 signature and has no Object Lock: custos's own
/// Object Lock requests pass its signature check and are answered "not implemented".
#[tokio::test]
async fn object_lock_requests_are_signed_as_s3_expects() {
    let objects = custos_store::objects::open_s3(&format!("s3://{}/p", bucket()), Some(&endpoint()))
        .unwrap()
        .with_object_lock("compliance:1d".parse().unwrap())
        .unwrap();
    let error = objects.check_object_lock().await.unwrap_err().to_string();
    assert!(error.contains("does not implement Object Lock") && error.contains("501"), "{error}");
    assert!(!error.contains("Signature"), "{error}");
    // A retention request carries a body, its SHA-256 and Content-MD5: all signed.
    let path = object_store::path::Path::from(format!("signed-{}", uuid::Uuid::new_v4()));
    let error = objects.put_new(&path, object_store::PutPayload::from_static(b"x")).await.unwrap_err().to_string();
    assert!(error.contains("setting Object Lock retention") && error.contains("501"), "{error}");
    // (Not merely "403": the object's name is a UUID, which may hold those digits.)
    assert!(!error.contains("Signature") && !error.contains("answered 403"), "{error}");
    // Reading a retention is a signed HEAD; s3s-fs reports none.
    let source = object_store::path::Path::from(format!("plain-{}", uuid::Uuid::new_v4()));
    use object_store::ObjectStoreExt;
    objects.store().put(&source, object_store::PutPayload::from_static(b"x")).await.unwrap();
    assert_eq!(objects.retention(&source).await.unwrap(), None);
}

#[tokio::test]
async fn a_local_directory_has_no_object_lock() {
    let dir = tempfile::tempdir().unwrap();
    let objects = custos_store::objects::open(None, dir.path()).unwrap();
    assert_eq!(objects.retention(&object_store::path::Path::from("any")).await.unwrap(), None);
    let error = objects.with_object_lock("compliance:1d".parse().unwrap()).unwrap_err().to_string();
    assert!(error.contains("needs S3 objects"), "{error}");
}
