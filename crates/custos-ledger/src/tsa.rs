//! RFC 3161 time-stamp tokens: the request custos sends a time-stamping authority for a
//! SHA-256 digest, and the offline verification of the token it gets back.
//!
//! A token is a CMS `SignedData` (RFC 5652) whose content is a `TSTInfo`: the digest
//! stamped (`messageImprint`), the time (`genTime`), a serial number and the TSA's
//! policy. [`verify_token`] checks, with nothing but the TSA's certificate:
//!
//! - the content is a `TSTInfo` whose imprint is SHA-256 of exactly the expected digest;
//! - one signer, with signed attributes whose `contentType` is `id-ct-TSTInfo` and whose
//!   `messageDigest` is SHA-256 of the `TSTInfo`;
//! - the signature over the DER of those attributes by a trusted certificate's key
//!   (ECDSA P-256 with SHA-256), a certificate whose extended key usage is exactly the
//!   critical `id-kp-timeStamping` RFC 3161 §2.3 requires;
//! - `genTime` inside that certificate's validity.
//!
//! The TSA is trusted by pinning its certificate (or several). A token's unsigned parts
//! are checked too, so that no byte of it can change unnoticed: the `SignedData`
//! version, a single SHA-256 digest algorithm, a signer identifier naming the signing
//! certificate, and every certificate the token carries being a pinned one (CRLs and
//! unsigned attributes are refused). Chains to a CA and RSA keys are not supported yet;
//! such a token is refused, never accepted unchecked.

use cms::content_info::ContentInfo;
use cms::signed_data::{EncapsulatedContentInfo, SignerInfos};
use custos_model::Timestamp;
use der::asn1::{Int, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Reader as _};
use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest, Sha256};
pub use x509_cert::Certificate;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::merkle::Hash;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ID_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const ID_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

/// Tokens larger than this are refused unread (a token is a few KiB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Why a token (or a TSA's answer, or a certificate) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsaError {
    #[error("the token is {0} bytes, over the {MAX_TOKEN_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the TSA refused the request (status {0})")]
    Refused(String),
    #[error("the token stamps another digest than the one expected")]
    ImprintMismatch,
    #[error("the token's nonce is not the request's")]
    NonceMismatch,
    #[error("the token's signed attributes do not match its content ({0})")]
    AttributesMismatch(&'static str),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the token is not signed by a trusted TSA certificate")]
    UntrustedSigner,
    #[error("the token carries a certificate that is not pinned (pin the whole chain the TSA sends)")]
    UntrustedCertificate,
    #[error("the TSA certificate cannot sign time stamps: {0}")]
    NotATsaCertificate(String),
    #[error("the token's time {time} is outside its certificate's validity")]
    OutsideValidity { time: String },
}

fn malformed(what: &str) -> impl Fn(der::Error) -> TsaError + '_ {
    move |e| TsaError::Malformed(format!("{what}: {e}"))
}

/// The DER `TimeStampReq` for a SHA-256 `digest`, asking for the TSA's certificate.
pub fn request(digest: &Hash, nonce: u64) -> Vec<u8> {
    let request = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifierOwned { oid: ID_SHA256, parameters: None },
            hashed_message: OctetString::new(digest.as_slice()).expect("32 bytes"),
        },
        req_policy: None,
        nonce: Some(nonce_int(nonce)),
        cert_req: true,
        extensions: None,
    };
    request.to_der().expect("a request encodes")
}

/// A nonce as a DER INTEGER: positive, in the fewest bytes (a leading zero byte only
/// when the top bit is set).
fn nonce_int(nonce: u64) -> Int {
    let bytes = nonce.to_be_bytes();
    let significant = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len() - 1);
    let mut minimal = Vec::with_capacity(9);
    if bytes[significant] >= 0x80 {
        minimal.push(0);
    }
    minimal.extend_from_slice(&bytes[significant..]);
    Int::new(&minimal).expect("at most 9 bytes")
}

/// The token in a TSA's DER `TimeStampResp`, when the TSA granted the request.
pub fn token_from_response(response: &[u8]) -> Result<Vec<u8>, TsaError> {
    let response = TimeStampResp::from_der(response).map_err(malformed("the response"))?;
    let status = response.status.status;
    if !matches!(status, cmpv2::status::PkiStatus::Accepted | cmpv2::status::PkiStatus::GrantedWithMods) {
        return Err(TsaError::Refused(format!("{status:?}")));
    }
    let token =
        response.time_stamp_token.ok_or_else(|| TsaError::Malformed("a granted response without a token".into()))?;
    token.to_der().map_err(malformed("the token"))
}

/// Reads trusted TSA certificates from PEM (one or more `CERTIFICATE` blocks).
pub fn parse_certificates(pem: &str) -> Result<Vec<Certificate>, TsaError> {
    let certificates = Certificate::load_pem_chain(pem.as_bytes()).map_err(malformed("the certificates"))?;
    if certificates.is_empty() {
        return Err(TsaError::Malformed("no certificate in the PEM".into()));
    }
    Ok(certificates)
}

/// Why `certificate` cannot sign time stamps (RFC 3161 §2.3: an extended key usage of
/// exactly `id-kp-timeStamping`, marked critical); `None` when it can.
pub fn tsa_certificate_problem(certificate: &Certificate) -> Option<String> {
    let extensions = certificate.tbs_certificate.extensions.as_deref().unwrap_or_default();
    let Some(eku) = extensions.iter().find(|e| e.extn_id == ID_EXTENDED_KEY_USAGE) else {
        return Some("it has no extended key usage".into());
    };
    if !eku.critical {
        return Some("its extended key usage is not critical".into());
    }
    match x509_cert::ext::pkix::ExtendedKeyUsage::from_der(eku.extn_value.as_bytes()) {
        Ok(usage) if usage.0 == [ID_KP_TIME_STAMPING] => None,
        Ok(_) => Some("its extended key usage is not exactly timeStamping".into()),
        Err(e) => Some(format!("its extended key usage does not parse: {e}")),
    }
}

/// A CMS `SignedData`, read leniently where a strict DER reader would refuse what TSAs
/// send (OpenSSL's lists the signer's certificate twice in a `SET OF`), and then checked
/// by hand: every byte of a token must be accounted for, signed or pinned.
struct SignedParts {
    version: der::Any,
    digest_algorithms: der::Any,
    encap: EncapsulatedContentInfo,
    /// The `[0]` certificates' contents: certificates back to back.
    certificates: Option<Vec<u8>>,
    has_crls: bool,
    signer_infos: SignerInfos,
}

fn signed_parts(content: &der::Any) -> der::Result<SignedParts> {
    let bytes = content.to_der()?;
    let mut reader = der::SliceReader::new(&bytes)?;
    let parts = reader.sequence(|r| {
        let version: der::Any = r.decode()?;
        let digest_algorithms: der::Any = r.decode()?;
        let encap: EncapsulatedContentInfo = r.decode()?;
        let (mut certificates, mut has_crls) = (None, false);
        let mut next: der::Any = r.decode()?;
        while der::Tagged::tag(&next).is_context_specific() {
            match der::Tagged::tag(&next).octet() & 0x1f {
                0 if certificates.is_none() => certificates = Some(next.value().to_vec()),
                1 if !has_crls => has_crls = true,
                _ => return Err(der::Tag::Sequence.value_error()),
            }
            next = r.decode()?;
        }
        let signer_infos = SignerInfos::from_der(&next.to_der()?)?;
        Ok(SignedParts { version, digest_algorithms, encap, certificates, has_crls, signer_infos })
    })?;
    reader.finish(parts)
}

/// Whether an algorithm identifier is `oid` with absent or NULL parameters.
fn is_algorithm(algorithm: &AlgorithmIdentifierOwned, oid: ObjectIdentifier) -> bool {
    algorithm.oid == oid && algorithm.parameters.as_ref().is_none_or(|p| p.is_null())
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedTimestamp {
    /// When the TSA stamped the digest.
    pub time: Timestamp,
    /// The token's serial number, hex.
    pub serial: String,
    /// The TSA's policy OID.
    pub policy: String,
    /// The signing certificate's subject.
    pub tsa: String,
}

/// Verifies a DER time-stamp token over `digest` against `trusted` TSA certificates;
/// with `nonce`, also that the token answers that request.
pub fn verify_token(
    token: &[u8],
    digest: &Hash,
    nonce: Option<u64>,
    trusted: &[Certificate],
) -> Result<VerifiedTimestamp, TsaError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TsaError::TooLarge(token.len()));
    }
    let content = ContentInfo::from_der(token).map_err(malformed("the token"))?;
    if content.content_type != ID_SIGNED_DATA {
        return Err(TsaError::Malformed(format!("content type {} is not signed data", content.content_type)));
    }
    let parts = signed_parts(&content.content).map_err(malformed("the signed data"))?;
    let (encap, signer_infos) = (&parts.encap, &parts.signer_infos);
    if parts.version.decode_as::<u8>().ok() != Some(3) {
        return Err(TsaError::Malformed("the signed data's version is not 3".into()));
    }
    let digest_algorithms: der::asn1::SetOfVec<AlgorithmIdentifierOwned> =
        parts.digest_algorithms.decode_as().map_err(malformed("the digest algorithms"))?;
    if digest_algorithms.len() != 1 || !is_algorithm(&digest_algorithms.as_slice()[0], ID_SHA256) {
        return Err(TsaError::Unsupported("digest algorithms other than SHA-256 alone".into()));
    }
    if parts.has_crls {
        return Err(TsaError::Unsupported("revocation lists in the token".into()));
    }
    if encap.econtent_type != ID_CT_TST_INFO {
        return Err(TsaError::Malformed("the signed content is not a TSTInfo".into()));
    }
    let econtent = encap.econtent.as_ref().ok_or_else(|| TsaError::Malformed("no TSTInfo".into()))?;
    let tst_der = econtent.decode_as::<OctetString>().map_err(malformed("the TSTInfo"))?;
    let tst_der = tst_der.as_bytes();
    let info = TstInfo::from_der(tst_der).map_err(malformed("the TSTInfo"))?;
    if info.message_imprint.hash_algorithm.oid != ID_SHA256 {
        return Err(TsaError::Unsupported(format!("imprint algorithm {}", info.message_imprint.hash_algorithm.oid)));
    }
    if info.message_imprint.hashed_message.as_bytes() != digest.as_slice() {
        return Err(TsaError::ImprintMismatch);
    }
    if let Some(expected) = nonce
        && info.nonce != Some(nonce_int(expected))
    {
        return Err(TsaError::NonceMismatch);
    }

    let signers = &signer_infos.0;
    let [signer] = signers.as_slice() else {
        return Err(TsaError::Malformed(format!("{} signers, expected one", signers.len())));
    };
    if !is_algorithm(&signer.digest_alg, ID_SHA256) {
        return Err(TsaError::Unsupported(format!("digest algorithm {}", signer.digest_alg.oid)));
    }
    if signer.unsigned_attrs.is_some() {
        return Err(TsaError::Unsupported("unsigned attributes".into()));
    }
    if !is_algorithm(&signer.signature_algorithm, ECDSA_WITH_SHA256) {
        return Err(TsaError::Unsupported(format!(
            "signature algorithm {} (custos verifies ECDSA P-256 with SHA-256)",
            signer.signature_algorithm.oid
        )));
    }
    let attributes = signer.signed_attrs.as_ref().ok_or(TsaError::AttributesMismatch("no signed attributes"))?;
    let single = |oid: ObjectIdentifier, name: &'static str| {
        let found: Vec<_> = attributes.iter().filter(|a| a.oid == oid).collect();
        match found.as_slice() {
            [attribute] if attribute.values.len() == 1 => Ok(attribute.values.get(0).expect("one value")),
            _ => Err(TsaError::AttributesMismatch(name)),
        }
    };
    let content_type: ObjectIdentifier =
        single(ID_CONTENT_TYPE, "contentType")?.decode_as().map_err(malformed("the contentType attribute"))?;
    if content_type != ID_CT_TST_INFO {
        return Err(TsaError::AttributesMismatch("contentType"));
    }
    let message_digest: OctetString =
        single(ID_MESSAGE_DIGEST, "messageDigest")?.decode_as().map_err(malformed("the messageDigest attribute"))?;
    if message_digest.as_bytes() != Sha256::digest(tst_der).as_slice() {
        return Err(TsaError::AttributesMismatch("messageDigest"));
    }
    // The signature covers the attributes' DER as a SET OF (RFC 5652 §5.4).
    let signed_bytes = attributes.to_der().map_err(malformed("the signed attributes"))?;
    let signature = p256::ecdsa::Signature::from_der(signer.signature.as_bytes())
        .map_err(|e| TsaError::Malformed(format!("the signature: {e}")))?;
    let certificate = trusted
        .iter()
        .find(|certificate| {
            let spki = &certificate.tbs_certificate.subject_public_key_info;
            spki.algorithm.oid == ID_EC_PUBLIC_KEY
                && spki.subject_public_key.as_bytes().is_some_and(|key| {
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                        .is_ok_and(|key| key.verify(&signed_bytes, &signature).is_ok())
                })
        })
        .ok_or(TsaError::UntrustedSigner)?;
    if let Some(problem) = tsa_certificate_problem(certificate) {
        return Err(TsaError::NotATsaCertificate(problem));
    }
    // The signer's identifier and any certificate the token carries are not signed:
    // they must name, and be, pinned certificates.
    let names_certificate = match &signer.sid {
        cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(id) => {
            id.issuer == certificate.tbs_certificate.issuer
                && id.serial_number == certificate.tbs_certificate.serial_number
        }
        cms::signed_data::SignerIdentifier::SubjectKeyIdentifier(ski) => {
            certificate.tbs_certificate.extensions.as_deref().unwrap_or_default().iter().any(|e| {
                e.extn_id == ID_SUBJECT_KEY_IDENTIFIER && e.extn_value.as_bytes() == ski.to_der().unwrap_or_default()
            })
        }
    };
    // RFC 5652 §5.3: version 1 with an issuer and serial number, 3 with a key identifier.
    let expected_version = match &signer.sid {
        cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(_) => cms::content_info::CmsVersion::V1,
        cms::signed_data::SignerIdentifier::SubjectKeyIdentifier(_) => cms::content_info::CmsVersion::V3,
    };
    if !names_certificate || signer.version != expected_version {
        return Err(TsaError::Malformed("the signer's identifier or version does not match its certificate".into()));
    }
    if let Some(certificates) = &parts.certificates {
        let pinned: Vec<Vec<u8>> = trusted.iter().filter_map(|c| c.to_der().ok()).collect();
        let mut reader = der::SliceReader::new(certificates).map_err(malformed("the certificates"))?;
        while !reader.is_finished() {
            let embedded: der::Any = reader.decode().map_err(malformed("the certificates"))?;
            let embedded = embedded.to_der().map_err(malformed("the certificates"))?;
            if !pinned.contains(&embedded) {
                return Err(TsaError::UntrustedCertificate);
            }
        }
    }
    let time = info.gen_time.to_unix_duration();
    let validity = &certificate.tbs_certificate.validity;
    if time < validity.not_before.to_unix_duration() || time > validity.not_after.to_unix_duration() {
        return Err(TsaError::OutsideValidity { time: format!("{:?}", info.gen_time) });
    }
    let micros = i64::try_from(time.as_micros()).map_err(|_| TsaError::Malformed("genTime out of range".into()))?;
    Ok(VerifiedTimestamp {
        time: Timestamp::from_micros(micros),
        serial: hex::encode(info.serial_number.as_bytes()),
        policy: info.policy.to_string(),
        tsa: certificate.tbs_certificate.subject.to_string(),
    })
}
