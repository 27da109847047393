use proptest::prelude::*;

use super::*;

fn signer(n: u8) -> DsseSigner {
    DsseSigner::new(&[n; 32])
}

const STATEMENT: &[u8] = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;

/// The test vector of the DSSE specification (protocol.md).
#[test]
fn pae_matches_the_specification() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
}

#[test]
fn a_signed_envelope_verifies_and_returns_its_payload() {
    let envelope = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, STATEMENT, &[&signer(1)]);
    let verified = envelope.verify(&[signer(1).public_key()], PAYLOAD_TYPE_IN_TOTO).unwrap();
    assert_eq!(verified.payload, STATEMENT);
    assert_eq!(verified.signed_by, [signer(1).key_id()]);
    // Written as standard padded base64, with the key id set.
    assert_eq!(envelope.payload, STANDARD.encode(STATEMENT));
    assert_eq!(envelope.signatures[0].keyid, signer(1).key_id());
    assert_eq!(envelope.signatures[0].sig.len(), 88);
    assert!(envelope.signatures[0].sig.ends_with("=="));
    // And read back from its JSON.
    assert_eq!(Envelope::parse(envelope.to_json().as_bytes()).unwrap(), envelope);
}

#[test]
fn key_ids_are_the_published_fingerprints() {
    let public = signer(1).public_key().to_bytes();
    let digest = Sha256::digest(public);
    assert_eq!(signer(1).key_id(), format!("ed25519:{}", &hex::encode(digest)[..16]));
}

#[test]
fn a_rotation_window_is_two_signatures() {
    let envelope = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, STATEMENT, &[&signer(1), &signer(2)]);
    // A verifier that knows either key accepts it; one that knows both sees both.
    for keys in [vec![signer(1).public_key()], vec![signer(2).public_key()]] {
        assert!(envelope.verify(&keys, PAYLOAD_TYPE_IN_TOTO).is_ok());
    }
    let both = envelope.verify(&[signer(2).public_key(), signer(1).public_key()], PAYLOAD_TYPE_IN_TOTO).unwrap();
    assert_eq!(both.signed_by, [signer(1).key_id(), signer(2).key_id()]);
}

#[test]
fn refusals_say_why() {
    let keys = [signer(1).public_key()];
    let envelope = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, STATEMENT, &[&signer(1)]);

    let mut altered = envelope.clone();
    altered.payload = STANDARD.encode(br#"{"_type":"https://in-toto.io/Statement/v2"}"#);
    assert_eq!(
        altered.verify(&keys, PAYLOAD_TYPE_IN_TOTO),
        Err(DsseError::BadSignature { keyid: signer(1).key_id().into() })
    );

    let mut retyped = envelope.clone();
    retyped.payload_type = "application/json".into();
    assert_eq!(
        retyped.verify(&keys, PAYLOAD_TYPE_IN_TOTO),
        Err(DsseError::BadSignature { keyid: signer(1).key_id().into() })
    );

    let other = Envelope::sign("application/vnd.custos.manifest+json", STATEMENT, &[&signer(1)]);
    assert!(matches!(other.verify(&keys, PAYLOAD_TYPE_IN_TOTO), Err(DsseError::PayloadType { .. })));

    assert_eq!(
        envelope.verify(&[signer(3).public_key()], PAYLOAD_TYPE_IN_TOTO),
        Err(DsseError::NoKnownSignature { signers: signer(1).key_id().into() })
    );
    let unsigned = Envelope { signatures: vec![], ..envelope.clone() };
    assert_eq!(
        unsigned.verify(&keys, PAYLOAD_TYPE_IN_TOTO),
        Err(DsseError::NoKnownSignature { signers: "nobody".into() })
    );

    // A known key's bad signature fails the envelope even beside a good one.
    let mut forged = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, STATEMENT, &[&signer(1), &signer(2)]);
    forged.signatures[1].sig = envelope.signatures[0].sig.clone();
    assert_eq!(
        forged.verify(&[signer(1).public_key(), signer(2).public_key()], PAYLOAD_TYPE_IN_TOTO),
        Err(DsseError::BadSignature { keyid: signer(2).key_id().into() })
    );
    let mut garbled = envelope;
    garbled.payload = "not base64!".into();
    assert_eq!(garbled.verify(&keys, PAYLOAD_TYPE_IN_TOTO), Err(DsseError::Base64 { field: "payload" }));
}

#[test]
fn url_safe_and_unpadded_base64_are_read() {
    // A payload whose standard base64 holds '+' and '/', and needs padding.
    let payload: Vec<u8> = vec![0xfb, 0xff, 0xbf, 0x00, 0x10];
    assert!(STANDARD.encode(&payload).contains(['+', '/']));
    let envelope = Envelope::sign("application/octet-stream", &payload, &[&signer(1)]);
    let keys = [signer(1).public_key()];
    for (payload_form, sig_form) in [(&URL_SAFE, &URL_SAFE_NO_PAD), (&URL_SAFE_NO_PAD, &STANDARD_NO_PAD)] {
        let mut reencoded = envelope.clone();
        reencoded.payload = payload_form.encode(&payload);
        reencoded.signatures[0].sig = sig_form.encode(decode_base64(&envelope.signatures[0].sig).unwrap());
        assert_eq!(reencoded.verify(&keys, "application/octet-stream").unwrap().payload, payload);
    }
}

#[test]
fn the_parser_is_bounded_and_strict() {
    let envelope = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, STATEMENT, &[&signer(1)]);
    let mut json: serde_json::Value = serde_json::from_str(&envelope.to_json()).unwrap();
    json["extra"] = serde_json::json!(1);
    assert!(matches!(Envelope::parse(json.to_string().as_bytes()), Err(DsseError::Malformed(_))));
    let many = Envelope { signatures: vec![envelope.signatures[0].clone(); MAX_SIGNATURES + 1], ..envelope.clone() };
    assert_eq!(Envelope::parse(many.to_json().as_bytes()), Err(DsseError::TooManySignatures(MAX_SIGNATURES + 1)));
    assert_eq!(
        many.verify(&[signer(1).public_key()], PAYLOAD_TYPE_IN_TOTO),
        Err(DsseError::TooManySignatures(MAX_SIGNATURES + 1))
    );
    let huge = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(Envelope::parse(&huge), Err(DsseError::TooLarge(MAX_ENVELOPE_BYTES + 1)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any flipped bit of the payload, its type or the signature fails verification.
    #[test]
    fn any_flipped_bit_fails(payload in prop::collection::vec(any::<u8>(), 0..200), target in 0usize..3, bit in any::<prop::sample::Index>()) {
        let keys = [signer(1).public_key()];
        let envelope = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, &payload, &[&signer(1)]);
        let mut altered = envelope.clone();
        let flip = |bytes: &mut Vec<u8>| {
            if bytes.is_empty() {
                bytes.push(1);
            } else {
                let i = bit.index(bytes.len() * 8);
                bytes[i / 8] ^= 1 << (i % 8);
            }
        };
        match target {
            0 => {
                let mut bytes = payload;
                flip(&mut bytes);
                altered.payload = STANDARD.encode(bytes);
            }
            1 => {
                let mut bytes = altered.payload_type.clone().into_bytes();
                flip(&mut bytes);
                altered.payload_type = String::from_utf8_lossy(&bytes).into_owned();
            }
            _ => {
                let mut bytes = decode_base64(&altered.signatures[0].sig).unwrap();
                flip(&mut bytes);
                altered.signatures[0].sig = STANDARD.encode(bytes);
            }
        }
        prop_assert!(envelope.verify(&keys, PAYLOAD_TYPE_IN_TOTO).is_ok());
        prop_assert!(altered.verify(&keys, PAYLOAD_TYPE_IN_TOTO).is_err());
    }
}
