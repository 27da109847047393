use std::io::Write as _;

use proptest::prelude::*;

use super::*;

const T0: i64 = 1_795_000_000_000_000;

fn signer() -> DsseSigner {
    DsseSigner::new(&[5; 32])
}

fn trusted(not_before: Option<i64>, not_after: Option<i64>) -> Vec<TrustedKey> {
    vec![TrustedKey {
        key: signer().public_key(),
        not_before: not_before.map(Timestamp::from_micros),
        not_after: not_after.map(Timestamp::from_micros),
    }]
}

fn verifier() -> Verifier {
    Verifier::new(trusted(Some(T0 - 1_000_000), None))
}

const FILES: [(&str, &[u8]); 4] = [
    ("artifacts/edr/alert 1.json", br#"{"alert":"mfa fatigue"}"#),
    ("artifacts/empty.bin", b""),
    ("artifacts/notes.txt", b"analyst notes\n"),
    ("proofs/timeline.json", br#"{"checkpoint":"..."}"#),
];

fn manifest_for(files: &[(&str, &[u8])], created_at: i64) -> Manifest {
    let mut entries: Vec<FileEntry> = files
        .iter()
        .map(|(path, bytes)| FileEntry {
            path: (*path).to_owned(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            media_type: "application/octet-stream".into(),
        })
        .collect();
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Manifest {
        format: BUNDLE_FORMAT.into(),
        bundle_id: "evb-01".into(),
        tenant_id: "acme".into(),
        case_id: "IR-7".into(),
        kind: "case".into(),
        resource_id: "IR-7".into(),
        created_at: Timestamp::from_micros(created_at),
        created_by: "tok_1 (analyst)".into(),
        custos_version: "0.1.0".into(),
        deployment: "custos.test".into(),
        key_id: signer().key_id().into(),
        merkle_root: hex::encode(merkle_root(&entries)),
        files: entries,
    }
}

/// Writes a signed bundle of `files` into `dir`.
fn write_bundle(dir: &Path, files: &[(&str, &[u8])], manifest: &Manifest, signers: &[&DsseSigner]) {
    for (path, bytes) in files {
        let at = dir.join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, bytes).unwrap();
    }
    let bytes = manifest.to_bytes();
    std::fs::write(dir.join(MANIFEST), &bytes).unwrap();
    std::fs::write(dir.join(MANIFEST_ENVELOPE), Manifest::sign(&bytes, signers).to_json()).unwrap();
    std::fs::write(dir.join(ROOT_FILE), format!("{}\n", manifest.merkle_root)).unwrap();
}

fn bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), &FILES, &manifest_for(&FILES, T0), &[&signer()]);
    dir
}

/// A `.tar.gz` of `dir`'s files under `top/`, plus raw `extra` entries.
fn tar_gz(dir: &Path, top: &str, extra: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for child in std::fs::read_dir(at).unwrap() {
            let child = child.unwrap().path();
            if child.is_dir() { pending.push(child) } else { paths.push(child) }
        }
    }
    paths.sort();
    for path in paths {
        let name = format!("{top}/{}", path.strip_prefix(dir).unwrap().to_str().unwrap());
        builder.append_path_with_name(&path, name).unwrap();
    }
    extra(&mut builder);
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Appends an entry with a raw name and type, as a hostile archive would.
fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
        header.set_link_name("../../etc/passwd").unwrap();
    }
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

#[test]
fn an_intact_bundle_verifies_as_a_directory_and_an_archive() {
    let dir = bundle();
    let report = verifier().verify_dir(dir.path()).unwrap();
    assert_eq!(report.bundle_id, "evb-01");
    assert_eq!(report.files, 4);
    assert_eq!(report.bytes, FILES.iter().map(|(_, b)| b.len() as u64).sum::<u64>());
    assert_eq!(report.signed_by, [signer().key_id()]);
    assert_eq!(report.merkle_root, manifest_for(&FILES, T0).merkle_root);
    let archive = tar_gz(dir.path(), "evb-01", |_| {});
    assert_eq!(verifier().verify_tar_gz(&archive[..]).unwrap(), report);
    // A key given alone, without a window, is enough.
    assert!(Verifier::new(trusted(None, None)).verify_dir(dir.path()).is_ok());
}

/// The leaf and root definitions, pinned: an independent verifier computes these.
#[test]
fn the_merkle_root_is_rfc6962_over_the_file_lines() {
    let manifest = manifest_for(&FILES, T0);
    let lines: Vec<String> = manifest.files.iter().map(|f| format!("{} {} {}", f.sha256, f.size, f.path)).collect();
    assert_eq!(lines[1], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 artifacts/empty.bin");
    let mut log = crate::merkle::MemoryLog::new();
    for line in &lines {
        log.push(leaf_hash(line.as_bytes()));
    }
    assert_eq!(hex::encode(log.root(4).unwrap()), manifest.merkle_root);
    assert_eq!(hex::encode(merkle_root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn each_alteration_is_named() {
    let check = |alter: &dyn Fn(&Path), expected: BundleError| {
        let dir = bundle();
        alter(dir.path());
        assert_eq!(verifier().verify_dir(dir.path()), Err(expected.clone()));
        let archive = tar_gz(dir.path(), "evb-01", |_| {});
        assert_eq!(verifier().verify_tar_gz(&archive[..]), Err(expected));
    };
    let notes = "artifacts/notes.txt";
    check(
        &|d| std::fs::write(d.join(notes), b"analyst notez\n").unwrap(),
        BundleError::FileDigest {
            path: notes.into(),
            expected: hex::encode(Sha256::digest(b"analyst notes\n")),
            found: hex::encode(Sha256::digest(b"analyst notez\n")),
        },
    );
    check(
        &|d| std::fs::write(d.join(notes), b"analyst").unwrap(),
        BundleError::FileSize { path: notes.into(), expected: 14, found: 7 },
    );
    check(&|d| std::fs::remove_file(d.join(notes)).unwrap(), BundleError::FileMissing { path: notes.into() });
    check(
        &|d| std::fs::write(d.join("artifacts/zzz.txt"), b"planted").unwrap(),
        BundleError::FileUnlisted { path: "artifacts/zzz.txt".into() },
    );
    check(
        &|d| {
            let text = std::fs::read_to_string(d.join(MANIFEST)).unwrap().replace("IR-7", "IR-8");
            std::fs::write(d.join(MANIFEST), text).unwrap();
        },
        BundleError::ManifestNotSigned,
    );
    check(
        &|d| std::fs::write(d.join(ROOT_FILE), "00\n").unwrap(),
        BundleError::RootFileMismatch { expected: manifest_for(&FILES, T0).merkle_root, found: "00\n".into() },
    );
    check(
        &|d| std::fs::remove_file(d.join(MANIFEST_ENVELOPE)).unwrap(),
        BundleError::MissingMetadata { path: MANIFEST_ENVELOPE },
    );
    check(
        &|d| {
            let mut envelope = Envelope::parse(&std::fs::read(d.join(MANIFEST_ENVELOPE)).unwrap()).unwrap();
            let mut sig = crate::dsse::decode_base64(&envelope.signatures[0].sig).unwrap();
            sig[10] ^= 1;
            envelope.signatures[0].sig = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sig);
            std::fs::write(d.join(MANIFEST_ENVELOPE), envelope.to_json()).unwrap();
        },
        BundleError::Signature(DsseError::BadSignature { keyid: signer().key_id().into() }),
    );
    // Re-signed by someone else: the manifest is theirs, not a trusted key's.
    let stranger = DsseSigner::new(&[6; 32]);
    check(
        &|d| {
            let bytes = std::fs::read(d.join(MANIFEST)).unwrap();
            std::fs::write(d.join(MANIFEST_ENVELOPE), Manifest::sign(&bytes, &[&stranger]).to_json()).unwrap();
        },
        BundleError::Signature(DsseError::NoKnownSignature { signers: stranger.key_id().into() }),
    );
    // A signed manifest whose root is not its files': signed nonsense is still nonsense.
    check(
        &|d| {
            let mut manifest = manifest_for(&FILES, T0);
            manifest.merkle_root = "ab".repeat(32);
            write_bundle(d, &[], &manifest, &[&signer()]);
        },
        BundleError::RootMismatch { stated: "ab".repeat(32), computed: manifest_for(&FILES, T0).merkle_root },
    );
}

#[test]
fn a_key_counts_only_inside_its_window() {
    let dir = bundle();
    let retired = Verifier::new(trusted(Some(T0 - 10_000_000), Some(T0 - 1)));
    assert!(matches!(
        retired.verify_dir(dir.path()),
        Err(BundleError::KeyNotValid { key_id, .. }) if key_id == signer().key_id()
    ));
    let future = Verifier::new(trusted(Some(T0 + 1), None));
    assert!(matches!(future.verify_dir(dir.path()), Err(BundleError::KeyNotValid { .. })));
    // During a rotation, the new key's signature carries a bundle the old key no longer can.
    let next = DsseSigner::new(&[8; 32]);
    let rotated = tempfile::tempdir().unwrap();
    write_bundle(rotated.path(), &FILES, &manifest_for(&FILES, T0), &[&signer(), &next]);
    let mut keys = trusted(Some(T0 - 10_000_000), Some(T0 - 1));
    keys.push(TrustedKey { key: next.public_key(), not_before: Some(Timestamp::from_micros(T0 - 1)), not_after: None });
    let report = Verifier::new(keys).verify_dir(rotated.path()).unwrap();
    // Only a signature that counts is reported: the old key's was made outside its window.
    assert_eq!(report.signed_by, [next.key_id()]);
    // Inside an overlap window both count, and a verifier that knows only the old key
    // (its keyring saved before the rotation) still verifies.
    let mut overlap = trusted(Some(T0 - 10_000_000), Some(T0 + 1));
    overlap.push(TrustedKey {
        key: next.public_key(),
        not_before: Some(Timestamp::from_micros(T0 - 1)),
        not_after: None,
    });
    assert_eq!(
        Verifier::new(overlap).verify_dir(rotated.path()).unwrap().signed_by,
        [signer().key_id(), next.key_id()]
    );
    let old_only = Verifier::new(trusted(Some(T0 - 10_000_000), None));
    assert_eq!(old_only.verify_dir(rotated.path()).unwrap().signed_by, [signer().key_id()]);
}

#[test]
fn keyrings_are_read_from_the_published_keys() {
    let key = signer().public_key();
    let json = serde_json::json!({"deployment": "custos.test", "keys": [{
        "key_id": key.key_id(), "algorithm": "ed25519",
        "public_key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.to_bytes()),
        "created_at": "2026-11-01T00:00:00Z", "not_before": "2026-11-01T00:00:00Z", "not_after": null,
    }]});
    let keys = parse_keyring(json.to_string().as_bytes()).unwrap();
    assert_eq!(keys[0].key, key);
    assert_eq!(keys[0].not_before, Some(Timestamp::parse("t", "2026-11-01T00:00:00Z").unwrap()));
    let mut wrong = json;
    wrong["keys"][0]["key_id"] = "ed25519:0000000000000000".into();
    assert!(parse_keyring(wrong.to_string().as_bytes()).unwrap_err().contains("keys[0].key_id"));
    assert!(parse_keyring(b"[]").is_err());
}

#[test]
fn hostile_archives_are_refused() {
    let dir = bundle();
    let refused = |extra: &dyn Fn(&mut tar::Builder<Vec<u8>>)| {
        let archive = tar_gz(dir.path(), "evb-01", |b| extra(b));
        verifier().verify_tar_gz(&archive[..]).unwrap_err()
    };
    let unsafe_path = |e: BundleError| match e {
        BundleError::Unsafe { path, reason } => (path, reason),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        unsafe_path(refused(&|b| raw_entry(b, "evb-01/../../etc/cron.d/x", tar::EntryType::Regular, b"x"))).1,
        "the path has a '.' or '..' component"
    );
    assert_eq!(
        unsafe_path(refused(&|b| raw_entry(b, "/etc/passwd", tar::EntryType::Regular, b"x"))).1,
        "the path is absolute"
    );
    assert_eq!(
        unsafe_path(refused(&|b| raw_entry(b, "evb-01/link", tar::EntryType::Symlink, b""))).1,
        "a symbolic link"
    );
    assert_eq!(unsafe_path(refused(&|b| raw_entry(b, "evb-01/hard", tar::EntryType::Link, b""))).1, "a hard link");
    assert_eq!(unsafe_path(refused(&|b| raw_entry(b, "evb-01/dev", tar::EntryType::Char, b""))).1, "a device file");
    assert_eq!(
        unsafe_path(refused(&|b| raw_entry(
            b,
            "evb-01/artifacts/notes.txt",
            tar::EntryType::Regular,
            b"analyst notes\n"
        ))),
        ("artifacts/notes.txt".into(), "a second entry of this path".into())
    );
    assert_eq!(
        unsafe_path(refused(&|b| raw_entry(b, "elsewhere/x", tar::EntryType::Regular, b"x"))).1,
        "outside the bundle's directory evb-01/"
    );
    let archive = tar_gz(dir.path(), "evb-01", |_| {});
    assert_eq!(verifier().with_max_entries(5).verify_tar_gz(&archive[..]), Err(BundleError::TooManyEntries(5)));
    assert_eq!(verifier().with_max_entries(5).verify_dir(dir.path()), Err(BundleError::TooManyEntries(5)));
    // 64 MiB of zeros compress a thousandfold.
    let bomb =
        tar_gz(dir.path(), "evb-01", |b| raw_entry(b, "evb-01/zeros", tar::EntryType::Regular, &vec![0; 64 << 20]));
    assert_eq!(verifier().verify_tar_gz(&bomb[..]), Err(BundleError::Bomb));
    assert!(matches!(verifier().verify_tar_gz(&b"not gzip"[..]), Err(BundleError::Read(_))));
    assert!(matches!(verifier().verify_tar_gz(&archive[..archive.len() / 2]), Err(BundleError::Read(_))));
}

#[cfg(unix)]
#[test]
fn directories_with_links_are_refused() {
    let dir = bundle();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("artifacts/passwd")).unwrap();
    assert_eq!(
        verifier().verify_dir(dir.path()),
        Err(BundleError::Unsafe { path: "artifacts/passwd".into(), reason: "a symbolic link".into() })
    );
}

#[test]
fn manifests_are_checked_beyond_their_json() {
    let mut manifest = manifest_for(&FILES, T0);
    assert!(manifest.check().is_ok());
    manifest.files.swap(0, 1);
    assert!(manifest.check().unwrap_err().contains("out of order"));
    let mut manifest = manifest_for(&FILES, T0);
    manifest.files[0].path = "artifacts/../x".into();
    assert!(manifest.check().unwrap_err().contains("'..'"));
    let mut manifest = manifest_for(&FILES, T0);
    manifest.files[0].path = MANIFEST.into();
    assert!(manifest.check().unwrap_err().contains("metadata"));
    let mut manifest = manifest_for(&FILES, T0);
    manifest.files[0].sha256 = manifest.files[0].sha256.to_uppercase();
    assert!(manifest.check().unwrap_err().contains("lowercase hex"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Flipping any bit of any listed file fails verification, naming that file.
    #[test]
    fn any_flipped_bit_is_pinned_to_its_file(file in 0usize..FILES.len(), bit in any::<prop::sample::Index>()) {
        let (path, bytes) = FILES[file];
        prop_assume!(!bytes.is_empty());
        let dir = bundle();
        let mut altered = bytes.to_vec();
        let i = bit.index(altered.len() * 8);
        altered[i / 8] ^= 1 << (i % 8);
        std::fs::write(dir.path().join(path), &altered).unwrap();
        match verifier().verify_dir(dir.path()) {
            Err(BundleError::FileDigest { path: named, .. }) => prop_assert_eq!(named, path),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

/// A bundle made from the documented format by independent code (Python, no custos)
/// verifies, and must in every later version: `test-data/bundles/v1/`.
#[test]
fn the_v1_fixtures_verify() {
    let archive = include_bytes!("../../../../test-data/bundles/v1/independent-python.tar.gz");
    let key = DsseSigner::new(&[7; 32]).public_key();
    let verifier = Verifier::new(vec![TrustedKey { key: key.clone(), not_before: None, not_after: None }]);
    let report = verifier.verify_tar_gz(&archive[..]).unwrap();
    assert_eq!((report.bundle_id.as_str(), report.files, report.bytes), ("evb-seed", 3, 39));
    assert_eq!(report.signed_by, [key.key_id()]);
    assert_eq!(report.signed_at, Timestamp::parse("t", "2026-11-23T10:00:00Z").unwrap());
}

/// Archives `dir`'s bundle with [`ArchiveWriter`], files in path order.
fn archive(dir: &Path) -> Vec<u8> {
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for child in std::fs::read_dir(at).unwrap() {
            let child = child.unwrap().path();
            if child.is_dir() {
                pending.push(child)
            } else {
                paths.push(child.strip_prefix(dir).unwrap().to_str().unwrap().to_owned())
            }
        }
    }
    paths.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut writer = ArchiveWriter::new(Vec::new(), "evb-01");
    for path in paths {
        let bytes = std::fs::read(dir.join(&path)).unwrap();
        writer.add(&path, bytes.len() as u64, &bytes[..]).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn archives_are_deterministic_and_verify() {
    let first = archive(bundle().path());
    // Another directory, written at another time, of the same bundle.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = archive(bundle().path());
    assert_eq!(first, second);
    // gzip: no name, modification time 0, no extra flags, unknown OS.
    assert_eq!(&first[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let report = verifier().verify_tar_gz(&first[..]).unwrap();
    assert_eq!(report.files, 4);
    let mut entries = tar::Archive::new(flate2::read::GzDecoder::new(&first[..]));
    for entry in entries.entries().unwrap() {
        let header = entry.unwrap().header().clone();
        assert_eq!((header.mode().unwrap(), header.mtime().unwrap(), header.uid().unwrap()), (0o644, 0, 0));
    }
    // A long path survives, and order is enforced.
    let long = format!("artifacts/{}", "x".repeat(300));
    let mut writer = ArchiveWriter::new(Vec::new(), "evb-01");
    writer.add(&long, 1, &b"x"[..]).unwrap();
    assert!(writer.add("artifacts/a", 1, &b"x"[..]).is_err());
    assert!(writer.add("z/../etc", 1, &b"x"[..]).is_err());
    let bytes = writer.finish().unwrap();
    let mut entries = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let names: Vec<String> =
        entries.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(names, [format!("evb-01/{long}")]);
}

/// Fed file by file in any order (as from an object store), the verdict is the same.
#[test]
fn bundles_verify_file_by_file() {
    let dir = bundle();
    let verifier = verifier();
    let mut check = verifier.check();
    // Every metadata file but the optional timestamp, which this bundle has not.
    let metadata = METADATA_FILES.into_iter().filter(|m| *m != TIMESTAMP_FILE);
    let mut paths: Vec<&str> = FILES.iter().map(|(p, _)| *p).chain(metadata).collect();
    paths.reverse();
    for path in &paths {
        check.add(path, std::fs::File::open(dir.path().join(path)).unwrap()).unwrap();
    }
    assert_eq!(check.finish().unwrap(), verifier.verify_dir(dir.path()).unwrap());
    let mut twice = verifier.check();
    twice.add("artifacts/notes.txt", &b"a"[..]).unwrap();
    assert!(matches!(twice.add("artifacts/notes.txt", &b"a"[..]), Err(BundleError::Unsafe { .. })));
    let mut incomplete = verifier.check();
    incomplete.add(MANIFEST, std::fs::File::open(dir.path().join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(incomplete.finish(), Err(BundleError::MissingMetadata { path: MANIFEST_ENVELOPE }));
}

/// The stored-gzip layout, byte for byte, across the block boundary, and read back by
/// an independent inflater (flate2's).
#[test]
fn stored_gzip_has_its_documented_layout() {
    use std::io::Read as _;
    for size in [0usize, 1, 65_534, 65_535, 65_536, 2 * 65_535, 2 * 65_535 + 7] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let mut gz = StoredGzip::new(Vec::new());
        // Written in uneven pieces: the layout does not depend on how.
        for piece in data.chunks(40_000) {
            gz.write_all(piece).unwrap();
        }
        let bytes = gz.finish().unwrap();
        assert_eq!(&bytes[..10], &StoredGzip::<Vec<u8>>::HEADER);
        let full = size.saturating_sub(1) / 65_535;
        let last = size - full * 65_535;
        assert_eq!(bytes.len(), 10 + full * (5 + 65_535) + 5 + last + 8, "size {size}");
        for block in 0..full {
            let at = 10 + block * (5 + 65_535);
            assert_eq!(&bytes[at..at + 5], &[0, 0xff, 0xff, 0, 0], "size {size} block {block}");
        }
        let at = 10 + full * (5 + 65_535);
        let len = last as u16;
        assert_eq!(bytes[at], 1, "the final block");
        assert_eq!(
            &bytes[at + 1..at + 5],
            &[len.to_le_bytes()[0], len.to_le_bytes()[1], !len.to_le_bytes()[0], !len.to_le_bytes()[1]]
        );
        let trailer = &bytes[bytes.len() - 8..];
        assert_eq!(trailer[..4], crc32fast::hash(&data).to_le_bytes());
        assert_eq!(trailer[4..], (size as u32).to_le_bytes());
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut inflated).unwrap();
        assert_eq!(inflated, data, "size {size}");
    }
}

/// The records of a five-leaf timeline of tenant `acme` at `custos.test`.
fn timeline_records() -> Vec<Vec<u8>> {
    (0..5).map(|i| format!(r#"{{"event_id":"ev-{i}","kind":"platform.rule.ran"}}"#).into_bytes()).collect()
}

/// A bundle holding leaves 1 and 3 of [`timeline_records`]' log with their proofs to a
/// checkpoint signed under `origin` with `checkpoint_seed`; `alter` changes the files
/// before the manifest is made and signed, so only the proofs can fail.
fn proven_bundle(
    origin: &str,
    checkpoint_seed: [u8; 32],
    alter: impl FnOnce(&mut BTreeMap<String, Vec<u8>>),
) -> tempfile::TempDir {
    let records = timeline_records();
    let mut log = crate::merkle::MemoryLog::new();
    for record in &records {
        log.push(leaf_hash(record));
    }
    let checkpoint =
        crate::note::Checkpoint { origin: origin.into(), size: 5, root: log.root(5).unwrap(), extensions: vec![] };
    let note = checkpoint.sign(&crate::note::NoteSigner::new(origin, &checkpoint_seed).unwrap()).unwrap();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("evaluation/rule_run.json".into(), br#"{"id":"run-1"}"#.to_vec());
    files.insert("proofs/timeline.checkpoint".into(), note.into_bytes());
    for index in [1u64, 3] {
        let leaf = format!("timeline/{index}.json");
        files.insert(leaf.clone(), records[index as usize].clone());
        let proof = InclusionProof {
            format: PROOF_FORMAT.into(),
            log: "timeline".into(),
            leaf,
            leaf_index: index,
            tree_size: 5,
            audit_path: log
                .inclusion_proof(index, 5)
                .unwrap()
                .iter()
                .map(|h| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h))
                .collect(),
        };
        files.insert(format!("proofs/timeline/{index}.json"), proof.to_bytes());
    }
    alter(&mut files);
    let listed: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let mut manifest = manifest_for(&listed, T0);
    manifest.kind = "evaluation".into();
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path(), &listed, &manifest, &[&signer()]);
    dir
}

const ORIGIN: &str = "custos.test/tenants/acme/timeline";

#[test]
fn inclusion_proofs_verify_to_a_signed_checkpoint() {
    let dir = proven_bundle(ORIGIN, [5; 32], |_| {});
    let report = verifier().verify_dir(dir.path()).unwrap();
    assert_eq!((report.kind.as_str(), report.inclusion_proofs, report.files), ("evaluation", 2, 6));
    let report = verifier().verify_tar_gz(&archive(dir.path())[..]).unwrap();
    assert_eq!(report.inclusion_proofs, 2);
    // Bundles without proofs report none, and say nothing of them in JSON.
    let plain = verifier().verify_dir(bundle().path()).unwrap();
    assert_eq!(plain.inclusion_proofs, 0);
    assert!(!serde_json::to_string(&plain).unwrap().contains("inclusion_proofs"));
}

#[test]
fn each_proof_failure_is_named() {
    let fails = |dir: tempfile::TempDir, path: &str, says: &str| {
        let error = verifier().verify_dir(dir.path()).unwrap_err();
        assert_eq!(error.check(), "inclusion_proof", "{error}");
        let BundleError::Proof { path: at, message } = &error else { panic!("{error:?}") };
        assert_eq!(at, path, "{error}");
        assert!(message.contains(says), "{message:?} should say {says:?}");
        // The same verdict from the archive.
        assert_eq!(verifier().verify_tar_gz(&archive(dir.path())[..]).unwrap_err(), error);
    };
    let edit = |path: &'static str, f: fn(&mut serde_json::Value)| {
        move |files: &mut BTreeMap<String, Vec<u8>>| {
            let mut proof: serde_json::Value = serde_json::from_slice(&files[path]).unwrap();
            f(&mut proof);
            files.insert(path.into(), serde_json::to_vec(&proof).unwrap());
        }
    };
    // A record that is not the one the log holds (the bundle's digests agree: it was
    // changed before sealing).
    fails(
        proven_bundle(ORIGIN, [5; 32], |f| {
            f.insert("timeline/3.json".into(), br#"{"event_id":"ev-3","kind":"platform.rule.skipped"}"#.to_vec());
        }),
        "proofs/timeline/3.json",
        "is not in the timeline log's checkpoint of 5 leaves",
    );
    fails(
        proven_bundle(ORIGIN, [5; 32], edit("proofs/timeline/1.json", |p| p["leaf_index"] = 2.into())),
        "proofs/timeline/1.json",
        "(leaf 2) is not in the timeline log",
    );
    fails(
        proven_bundle(ORIGIN, [5; 32], edit("proofs/timeline/1.json", |p| p["audit_path"][0] = "AAAA".into())),
        "proofs/timeline/1.json",
        "32-byte hashes",
    );
    fails(
        proven_bundle(ORIGIN, [5; 32], edit("proofs/timeline/1.json", |p| p["tree_size"] = 4.into())),
        "proofs/timeline/1.json",
        "a tree of 4 leaves, the checkpoint has 5",
    );
    fails(
        proven_bundle(ORIGIN, [5; 32], edit("proofs/timeline/1.json", |p| p["leaf"] = "timeline/9.json".into())),
        "proofs/timeline/1.json",
        "\"timeline/9.json\" is not in the bundle",
    );
    fails(
        proven_bundle(
            ORIGIN,
            [5; 32],
            edit("proofs/timeline/1.json", |p| p["leaf"] = "evaluation/rule_run.json".into()),
        ),
        "proofs/timeline/1.json",
        "is not under timeline/",
    );
    fails(
        proven_bundle(ORIGIN, [5; 32], edit("proofs/timeline/1.json", |p| p["log"] = "audit".into())),
        "proofs/timeline/1.json",
        "names log \"audit\"",
    );
    fails(
        proven_bundle(ORIGIN, [5; 32], edit("proofs/timeline/1.json", |p| p["format"] = "v0".into())),
        "proofs/timeline/1.json",
        "format is \"v0\"",
    );
    fails(
        proven_bundle(ORIGIN, [5; 32], |f| {
            f.remove("proofs/timeline.checkpoint");
        }),
        "proofs/timeline/1.json",
        "no proofs/timeline.checkpoint",
    );
    // Signed by a key the keyring does not hold, or for another tenant's log.
    fails(proven_bundle(ORIGIN, [6; 32], |_| {}), "proofs/timeline.checkpoint", "does not verify");
    fails(
        proven_bundle("custos.test/tenants/globex/timeline", [5; 32], |_| {}),
        "proofs/timeline.checkpoint",
        "does not verify",
    );
}

#[test]
fn a_checkpoint_counts_only_from_a_key_that_existed_at_sealing() {
    let dir = proven_bundle(ORIGIN, [9; 32], |_| {});
    let later = DsseSigner::new(&[9; 32]).public_key();
    let keyring = |not_before: i64| {
        let mut keys = trusted(Some(T0 - 1_000_000), None);
        keys.push(TrustedKey {
            key: later.clone(),
            not_before: Some(Timestamp::from_micros(not_before)),
            not_after: None,
        });
        Verifier::new(keys)
    };
    // A retired key's checkpoint counts: it was signed before the bundle.
    let mut retired = trusted(Some(T0 - 1_000_000), None);
    retired.push(TrustedKey {
        key: later.clone(),
        not_before: Some(Timestamp::from_micros(T0 - 5_000_000)),
        not_after: Some(Timestamp::from_micros(T0 - 2_000_000)),
    });
    assert_eq!(Verifier::new(retired).verify_dir(dir.path()).unwrap().inclusion_proofs, 2);
    assert_eq!(keyring(T0 - 1).verify_dir(dir.path()).unwrap().inclusion_proofs, 2);
    let error = keyring(T0 + 1).verify_dir(dir.path()).unwrap_err();
    assert!(matches!(&error, BundleError::Proof { path, .. } if path == "proofs/timeline.checkpoint"), "{error}");
}

#[test]
fn other_files_under_proofs_are_checked_by_digest_alone() {
    // As in bundles made before proofs were checked (the v1 fixture holds one).
    let dir = proven_bundle(ORIGIN, [5; 32], |f| {
        f.insert("proofs/notes.txt".into(), b"free text".to_vec());
        f.insert("proofs/timeline/readme.md".into(), b"not a proof".to_vec());
    });
    assert_eq!(verifier().verify_dir(dir.path()).unwrap().inclusion_proofs, 2);
    // A proof file over the bound is refused before it is parsed.
    let big = proven_bundle(ORIGIN, [5; 32], |f| {
        f.insert("proofs/timeline/9.json".into(), vec![b' '; MAX_PROOF_BYTES as usize + 1]);
    });
    let error = verifier().verify_dir(big.path()).unwrap_err();
    assert!(matches!(&error, BundleError::Malformed { path, .. } if path == "proofs/timeline/9.json"), "{error}");
}
