use base64::Engine as _;

use super::*;

/// The key of Go's `golang.org/x/mod/sumdb/note` tests:
/// `PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz`.
fn peter() -> NoteSigner {
    let key = STANDARD.decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz").unwrap();
    assert_eq!(key[0], ALG_ED25519);
    NoteSigner::new("PeterNeumann", &key[1..].try_into().unwrap()).unwrap()
}

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIGNED: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str =
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

/// Go's vectors: the verifier key string and the signed note, byte for byte.
#[test]
fn matches_go_note_vectors() {
    let signer = peter();
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.verifier().to_string(), PETER_VKEY);
    assert_eq!(NoteVerifier::parse(PETER_VKEY).unwrap(), signer.verifier());
    assert_eq!(signer.sign(TEXT).unwrap(), PETER_SIGNED);

    let opened = open(PETER_SIGNED.as_bytes(), &[signer.verifier()]).unwrap();
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.signed_by, vec![("PeterNeumann".to_owned(), 0xc74f20a3)]);
}

#[test]
fn verifier_keys_are_checked() {
    // Go's bad keys: wrong length, unknown algorithm (each with a matching key id).
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(NoteVerifier::parse(bad).is_err(), "{bad}");
    }
    assert!(matches!(NoteSigner::new("two words", &[7; 32]), Err(NoteError::InvalidName(_))));
    assert!(matches!(NoteSigner::new("a+b", &[7; 32]), Err(NoteError::InvalidName(_))));
}

#[test]
fn unknown_signers_are_kept_but_do_not_count() {
    let both = format!("{PETER_SIGNED}{ENOCH_SIG}");
    let opened = open(both.as_bytes(), &[peter().verifier()]).unwrap();
    assert_eq!(opened.signed_by.len(), 1);
    assert_eq!(opened.unverified, vec![("EnochRoot".to_owned(), 0xaf0cfe78)]);
    let err = open(both.as_bytes(), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the note has no signature by a known key (signed by: PeterNeumann+c74f20a3, EnochRoot+af0cfe78)"
    );
}

#[test]
fn any_altered_byte_is_refused() {
    let known = [peter().verifier()];
    let bytes = PETER_SIGNED.as_bytes();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut altered = bytes.to_vec();
            altered[i] ^= flip;
            if let Ok(opened) = open(&altered, &known) {
                panic!("byte {i} ^ {flip:#x} still opened: {opened:?}");
            }
        }
    }
}

#[test]
fn malformed_notes_say_why() {
    let known = [peter().verifier()];
    let cases: &[(&str, &str)] = &[
        ("no signatures\n", "no blank line"),
        ("text\n\n", "must end with a newline"),
        ("text\n\n— PeterNeumann x08go\n", "malformed"),
        ("text\n\n- PeterNeumann AAAA\n", "must start with"),
        ("te\tkt\n\n— PeterNeumann AAAAAAA=\n", "control character"),
    ];
    for (note, why) in cases {
        let err = open(note.as_bytes(), &known).unwrap_err().to_string();
        assert!(err.contains(why), "{note:?}: {err}");
    }
    assert!(matches!(open(&vec![b'a'; MAX_NOTE_BYTES + 1], &known), Err(NoteError::TooLarge(_))));
    assert!(matches!(peter().sign("no newline"), Err(NoteError::MalformedNote(_))));
    let altered = PETER_SIGNED.replace("don't", "do");
    assert_eq!(
        open(altered.as_bytes(), &known).unwrap_err(),
        NoteError::BadSignature { name: "PeterNeumann".into(), key_id: 0xc74f20a3 }
    );
}

#[test]
fn checkpoints_round_trip_and_check_their_origin() {
    let origin = "custos.example/tenants/acme/timeline";
    let signer = NoteSigner::new(origin, &[42; 32]).unwrap();
    let checkpoint = Checkpoint { origin: origin.into(), size: 1_234_567, root: [0xab; 32], extensions: vec![] };
    let note = checkpoint.sign(&signer).unwrap();
    assert!(note.starts_with("custos.example/tenants/acme/timeline\n1234567\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n— custos.example/tenants/acme/timeline "));
    let (opened, verified) = Checkpoint::open(note.as_bytes(), origin, &[signer.verifier()]).unwrap();
    assert_eq!(opened, checkpoint);
    assert_eq!(verified.signed_by[0].1, signer.key_id());

    // A key of another log does not vouch for this one.
    let other = NoteSigner::new("custos.example/tenants/acme/audit", &[42; 32]).unwrap();
    assert!(matches!(
        Checkpoint::open(note.as_bytes(), origin, &[other.verifier()]),
        Err(NoteError::NoKnownSignature { .. })
    ));
    assert!(matches!(checkpoint.sign(&other), Err(NoteError::WrongOrigin { .. })));
}

#[test]
fn checkpoint_text_is_strict() {
    let root = STANDARD.encode([1u8; 32]);
    assert_eq!(Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size, 0);
    assert_eq!(Checkpoint::parse(&format!("o\n5\n{root}\next one\n")).unwrap().extensions, ["ext one"]);
    for (text, why) in [
        (format!("o\n05\n{root}\n"), "leading zeros"),
        (format!("o\n-5\n{root}\n"), "decimal"),
        (format!("o\n18446744073709551616\n{root}\n"), "out of range"),
        ("o\n5\nAAAA\n".to_owned(), "32 bytes"),
        (format!("\n5\n{root}\n"), "origin"),
        (format!("o\n5\n{root}"), "newline"),
        (format!("o\n5\n{root}\n\n"), "extension line is empty"),
        ("o\n5\n".to_owned(), "root hash"),
    ] {
        let err = Checkpoint::parse(&text).unwrap_err().to_string();
        assert!(err.contains(why), "{text:?}: {err}");
    }
}

#[test]
fn verifier_keys_whose_base64_holds_a_plus_parse() {
    // Standard base64 uses '+'; a verifier key is split at its first two '+' only.
    let mut with_plus = 0;
    for seed in 0u8..=255 {
        let signer = NoteSigner::new("custos.test/tenants/acme/timeline", &[seed; 32]).unwrap();
        let vkey = signer.verifier().to_string();
        let parsed = NoteVerifier::parse(&vkey).unwrap();
        assert_eq!(parsed, signer.verifier(), "{vkey}");
        with_plus += usize::from(vkey.matches('+').count() > 2);
    }
    assert!(with_plus > 0, "no key among 256 had a '+' in its base64");
}

/// A rotation's overlap: two signature lines, in order, each verifying on its own, so a
/// verifier holding either key opens the note.
#[test]
fn a_note_signed_by_two_keys_opens_with_either() {
    let second = NoteSigner::new("PeterNeumann", &[5; 32]).unwrap();
    let note = sign(TEXT, &[&peter(), &second]).unwrap();
    assert!(note.starts_with(PETER_SIGNED), "the first line is Go's vector: {note}");
    assert_eq!(note.lines().filter(|l| l.starts_with(SIGNATURE_PREFIX)).count(), 2);
    for verifier in [peter().verifier(), second.verifier()] {
        let opened = open(note.as_bytes(), std::slice::from_ref(&verifier)).unwrap();
        assert_eq!(opened.signed_by, vec![("PeterNeumann".to_owned(), verifier.key_id())]);
    }
    let both = open(note.as_bytes(), &[peter().verifier(), second.verifier()]).unwrap();
    assert_eq!(both.signed_by.len(), 2);
    assert!(matches!(sign(TEXT, &[]), Err(NoteError::MalformedNote(_))));

    let origin = "custos.example/tenants/acme/timeline";
    let (old, new) = (NoteSigner::new(origin, &[1; 32]).unwrap(), NoteSigner::new(origin, &[2; 32]).unwrap());
    let checkpoint = Checkpoint { origin: origin.into(), size: 7, root: [3; 32], extensions: vec![] };
    let note = checkpoint.sign_all(&[&new, &old]).unwrap();
    for verifier in [old.verifier(), new.verifier()] {
        assert_eq!(Checkpoint::open(note.as_bytes(), origin, &[verifier]).unwrap().0, checkpoint);
    }
    let stranger = NoteSigner::new("custos.example/tenants/acme/audit", &[1; 32]).unwrap();
    assert!(matches!(checkpoint.sign_all(&[&new, &stranger]), Err(NoteError::WrongOrigin { .. })));
}
