//! S3 Object Lock retention on every object custos writes, when configured
//! (`--evidence-object-lock compliance:365d`).
//!
//! `object_store` cannot add `x-amz-object-lock-*` headers to its writes, and a header
//! added below its signer would be unsigned, which S3 refuses for `x-amz-*` headers. So
//! each write is followed by a `PutObjectRetention` request (`PUT <key>?retention`) naming
//! the version the write created, signed by `object_store`'s own SigV4 signer with the
//! same credentials. Between the two requests the object is unlocked unless the bucket
//! has a default retention; the docs say so.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use md5::Digest as _;
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{ClientOptions, HttpClient, HttpConnector, HttpRequest, ReqwestConnector};
use object_store::path::Path as ObjectPath;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{StoreError, StoreResult};

/// Longest retention `--evidence-object-lock` accepts: 100 years, as S3's bucket
/// default retention.
pub const MAX_LOCK_PERIOD: Duration = Duration::from_secs(36_500 * 86_400);

/// How S3 enforces the retention
/// ([modes](https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html#object-lock-retention-modes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may shorten or remove it.
    Governance,
    /// Nobody, the account's root user included, can shorten it or delete the version
    /// before it ends.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        }
    }

    fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// The retention set on every object written: `mode` until `period` after the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub period: Duration,
}

impl FromStr for ObjectLock {
    type Err = String;

    /// `MODE:PERIOD`, as `compliance:365d` or `governance:30days`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (mode, period) =
            value.split_once(':').ok_or("expected MODE:PERIOD, as compliance:365d or governance:30d")?;
        let mode = match mode.trim() {
            "compliance" => LockMode::Compliance,
            "governance" => LockMode::Governance,
            other => return Err(format!("the mode must be compliance or governance, not {other:?}")),
        };
        let period = humantime::parse_duration(period.trim()).map_err(|e| format!("the period: {e}"))?;
        if period < Duration::from_secs(1) || period > MAX_LOCK_PERIOD {
            return Err("the period must be at least 1s and at most 100 years".into());
        }
        Ok(ObjectLock { mode, period })
    }
}

impl std::fmt::Display for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.mode.as_str(), humantime::format_duration(self.period))
    }
}

/// Where an S3 store's objects are, for requests `object_store` does not make.
#[derive(Debug, Clone)]
pub(crate) struct S3Location {
    pub(crate) s3: AmazonS3,
    /// `https://s3.<region>.amazonaws.com/<bucket>`, or the bucket's URL on the
    /// configured endpoint; no trailing slash.
    pub(crate) bucket_url: String,
    pub(crate) region: String,
    /// The key prefix of `s3://bucket/prefix`, without slashes around it; may be empty.
    pub(crate) prefix: String,
    pub(crate) allow_http: bool,
}

/// An object's Object Lock state as S3 reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Retention {
    /// `compliance` or `governance`; null without a retention period.
    pub mode: Option<String>,
    /// As S3 reports it, RFC 3339; null without a retention period.
    pub retain_until: Option<String>,
    /// Whether a legal hold is on: S3 then deletes the version for nobody, whatever its
    /// retention.
    pub legal_hold: bool,
}

/// Object Lock requests on one bucket: retention set, read, and the bucket's
/// configuration.
#[derive(Debug)]
pub(crate) struct Bucket {
    location: S3Location,
    client: HttpClient,
}

/// What `object_store` leaves unencoded in a key: unreserved characters and `/`.
const PATH_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
/// A query value: unreserved characters only (SigV4 canonical form).
const QUERY_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

impl Bucket {
    pub(crate) fn new(location: S3Location) -> StoreResult<Self> {
        let options = ClientOptions::new().with_allow_http(location.allow_http);
        let client = ReqwestConnector::default().connect(&options).map_err(|source| StoreError::Object {
            context: "setting up the client for Object Lock requests".into(),
            source,
        })?;
        Ok(Bucket { location, client })
    }

    /// Locks `path` (its version `version` when the write reported one) as `lock` says,
    /// from now; returns the retain-until date as sent.
    pub(crate) async fn retain(
        &self,
        lock: ObjectLock,
        path: &ObjectPath,
        version: Option<&str>,
    ) -> StoreResult<String> {
        let until = retain_until(SystemTime::now(), lock.period);
        let body = retention_xml(lock.mode, &until);
        let mut url = format!("{}/{}?retention=", self.location.bucket_url, self.key_path(path));
        if let Some(version) = version {
            url.push_str("&versionId=");
            url.extend(utf8_percent_encode(version, QUERY_ENCODE_SET));
        }
        let context = || format!("setting Object Lock retention on {path}");
        let (status, _, answer) = self.send(http::Method::PUT, &url, Bytes::from(body), context).await?;
        if !status.is_success() {
            return Err(StoreError::ObjectLock { context: context(), detail: refusal(status, &answer) });
        }
        tracing::debug!(object = %path, mode = lock.mode.as_str(), retain_until = until.as_str(), "object locked");
        Ok(until)
    }

    /// Sets or clears the legal hold of `path`'s current version (`PutObjectLegalHold`):
    /// while it is on, S3 deletes that version for nobody, whatever its retention.
    pub(crate) async fn legal_hold(&self, path: &ObjectPath, on: bool) -> StoreResult<()> {
        let status = if on { "ON" } else { "OFF" };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LegalHold xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Status>{status}</Status></LegalHold>"
        );
        let url = format!("{}/{}?legal-hold=", self.location.bucket_url, self.key_path(path));
        let context = || format!("setting the Object Lock legal hold of {path} {status}");
        let (answer_status, _, answer) = self.send(http::Method::PUT, &url, Bytes::from(body), context).await?;
        if !answer_status.is_success() {
            return Err(StoreError::ObjectLock { context: context(), detail: refusal(answer_status, &answer) });
        }
        Ok(())
    }

    /// The Object Lock state of `path`'s current version (a signed `HEAD`), whoever set
    /// it: custos, or the bucket's default retention. `None` when it has neither a
    /// retention nor a legal hold.
    pub(crate) async fn retention(&self, path: &ObjectPath) -> StoreResult<Option<Retention>> {
        let url = format!("{}/{}", self.location.bucket_url, self.key_path(path));
        let context = || format!("reading the Object Lock retention of {path}");
        let (status, headers, answer) = self.send(http::Method::HEAD, &url, Bytes::new(), context).await?;
        if !status.is_success() {
            return Err(StoreError::ObjectLock { context: context(), detail: refusal(status, &answer) });
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let legal_hold = header("x-amz-object-lock-legal-hold").is_some_and(|status| status == "ON");
        Ok(match (header("x-amz-object-lock-mode"), header("x-amz-object-lock-retain-until-date")) {
            (Some(mode), Some(retain_until)) => {
                Some(Retention { mode: Some(mode.to_ascii_lowercase()), retain_until: Some(retain_until), legal_hold })
            }
            _ if legal_hold => Some(Retention { mode: None, retain_until: None, legal_hold }),
            _ => None,
        })
    }

    /// Checks that the bucket has Object Lock enabled (`GetObjectLockConfiguration`), so
    /// that a server refuses to start rather than fail every seal.
    pub(crate) async fn check_lock(&self) -> StoreResult<()> {
        let url = format!("{}?object-lock=", self.location.bucket_url);
        let context = || "checking that the bucket has Object Lock enabled".to_owned();
        let (status, _, answer) = self.send(http::Method::GET, &url, Bytes::new(), context).await?;
        if status.is_success() && lock_enabled(&answer) {
            return Ok(());
        }
        let detail = if status.is_success() {
            "the bucket's Object Lock configuration does not say Enabled".to_owned()
        } else if status == http::StatusCode::NOT_FOUND
            && xml_field(&answer, "Code").is_some_and(|c| c.contains("ObjectLock"))
        {
            "the bucket has no Object Lock configuration; Object Lock is enabled when a bucket is created \
             (aws s3api create-bucket --object-lock-enabled-for-bucket)"
                .to_owned()
        } else if status == http::StatusCode::NOT_IMPLEMENTED {
            format!("this S3 server does not implement Object Lock ({})", refusal(status, &answer))
        } else {
            refusal(status, &answer)
        };
        Err(StoreError::ObjectLock { context: context(), detail })
    }

    /// The key of `path` under the store's prefix, percent-encoded as `object_store`
    /// encodes it (the signature covers the encoded form).
    fn key_path(&self, path: &ObjectPath) -> String {
        let key = match self.location.prefix.as_str() {
            "" => path.as_ref().to_owned(),
            prefix => format!("{prefix}/{}", path.as_ref()),
        };
        utf8_percent_encode(&key, PATH_ENCODE_SET).to_string()
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        body: Bytes,
        context: impl Fn() -> String,
    ) -> StoreResult<(http::StatusCode, http::HeaderMap, Bytes)> {
        let credential = self
            .location
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|source| StoreError::Object { context: context(), source })?;
        let mut request = HttpRequest::new(body.clone().into());
        *request.method_mut() = method;
        *request.uri_mut() = url.parse().map_err(|e| StoreError::ObjectLock {
            context: context(),
            detail: format!("the request URL {url} is invalid: {e}"),
        })?;
        if !body.is_empty() {
            // S3 requires a Content-MD5 (or a checksum header) on PutObjectRetention.
            let md5 = md5::Md5::digest(&body);
            let md5 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, md5);
            request.headers_mut().insert("content-md5", md5.parse().expect("base64 is a valid header value"));
            request.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
        }
        AwsAuthorizer::new(&credential, "s3", &self.location.region)
            .try_authorize(&mut request, None)
            .map_err(|source| StoreError::Object { context: context(), source })?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| StoreError::ObjectLock { context: context(), detail: format!("no answer from S3: {e}") })?;
        let (parts, body) = response.into_parts();
        let answer = body
            .bytes()
            .await
            .map_err(|e| StoreError::ObjectLock { context: context(), detail: format!("reading S3's answer: {e}") })?;
        Ok((parts.status, parts.headers, answer))
    }
}

/// `now + period`, in whole seconds, as S3 takes it (`2027-11-24T06:30:00Z`).
fn retain_until(now: SystemTime, period: Duration) -> String {
    let until = now + period;
    let seconds = until.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Rounded up, so an object is never locked for less than the period.
    let seconds = seconds + u64::from(until.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|d| d.subsec_nanos() > 0));
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339).expect("a whole-second UTC time formats")
}

fn retention_xml(mode: LockMode, until: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Mode>{}</Mode><RetainUntilDate>{until}</RetainUntilDate></Retention>",
        mode.s3_name()
    )
}

fn lock_enabled(answer: &[u8]) -> bool {
    xml_field(answer, "ObjectLockEnabled").is_some_and(|v| v == "Enabled")
}

/// The text of the first `<name>…</name>` in an S3 answer (its error documents and the
/// lock configuration are flat enough for this).
fn xml_field(answer: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(answer).ok()?;
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(text[start..end].trim().to_owned())
}

/// What S3 said when it refused: status, error code and message.
fn refusal(status: http::StatusCode, answer: &[u8]) -> String {
    match (xml_field(answer, "Code"), xml_field(answer, "Message")) {
        (Some(code), Some(message)) => format!("S3 answered {} {code}: {message}", status.as_u16()),
        (Some(code), None) => format!("S3 answered {} {code}", status.as_u16()),
        _ => format!("S3 answered {}", status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_a_mode_and_a_bounded_period() {
        let lock: ObjectLock = "compliance:365d".parse().unwrap();
        assert_eq!(lock, ObjectLock { mode: LockMode::Compliance, period: Duration::from_secs(365 * 86_400) });
        assert_eq!(lock.to_string().parse::<ObjectLock>().unwrap(), lock, "{lock}");
        let lock: ObjectLock = "governance:30m".parse().unwrap();
        assert_eq!(lock.mode, LockMode::Governance);
        for (bad, says) in [
            ("365d", "MODE:PERIOD"),
            ("legal:1d", "compliance or governance"),
            ("compliance:soon", "the period"),
            ("compliance:0s", "at least 1s"),
            ("compliance:101years", "at most 100 years"),
        ] {
            let error = bad.parse::<ObjectLock>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn retention_runs_whole_seconds_from_the_write() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        // 1,795,086,400 s after the epoch, as Python's datetime.fromtimestamp reads it.
        assert_eq!(retain_until(now, Duration::from_secs(86_400)), "2026-11-19T11:06:40Z");
        // A fraction of a second rounds up: never shorter than the period.
        let now = now + Duration::from_millis(1);
        assert_eq!(retain_until(now, Duration::from_secs(86_400)), "2026-11-19T11:06:41Z");
        let xml = retention_xml(LockMode::Compliance, "2026-11-19T11:06:41Z");
        assert!(
            xml.contains("<Mode>COMPLIANCE</Mode><RetainUntilDate>2026-11-19T11:06:41Z</RetainUntilDate>"),
            "{xml}"
        );
    }

    #[test]
    fn s3_answers_are_read_for_their_code_and_message() {
        let error = b"<?xml version=\"1.0\"?><Error><Code>InvalidRequest</Code><Message>Bucket is missing ObjectLockConfiguration</Message></Error>";
        assert_eq!(
            refusal(http::StatusCode::BAD_REQUEST, error),
            "S3 answered 400 InvalidRequest: Bucket is missing ObjectLockConfiguration"
        );
        assert_eq!(refusal(http::StatusCode::BAD_GATEWAY, b"<html>"), "S3 answered 502 Bad Gateway");
        let config =
            b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>";
        assert!(lock_enabled(config));
        assert!(!lock_enabled(b"<ObjectLockConfiguration></ObjectLockConfiguration>"));
    }

    proptest::proptest! {
        /// S3's answers are read by hand: any bytes, valid XML or not, read without panicking.
        #[test]
        fn any_answer_is_read_without_panicking(answer in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
                                                 tail in "[<>/A-Za-z]{0,24}") {
            let mut answer = answer;
            answer.extend_from_slice(tail.as_bytes());
            let _ = refusal(http::StatusCode::BAD_REQUEST, &answer);
            let _ = lock_enabled(&answer);
            let _ = xml_field(&answer, "Code");
        }
    }
}
