use proptest::prelude::*;

use super::*;

/// The eight leaves of the Certificate Transparency test vectors for RFC 6962.
fn ct_leaves() -> Vec<Vec<u8>> {
    vec![
        vec![],
        vec![0x00],
        vec![0x10],
        vec![0x20, 0x21],
        vec![0x30, 0x31],
        vec![0x40, 0x41, 0x42, 0x43],
        (0x50..0x58).collect(),
        (0x60..0x70).collect(),
    ]
}

fn h(hex: &str) -> Hash {
    hex::decode(hex).unwrap().try_into().unwrap()
}

fn ct_log(size: usize) -> MemoryLog {
    let mut log = MemoryLog::new();
    for leaf in &ct_leaves()[..size] {
        log.push(leaf_hash(leaf));
    }
    log
}

/// RFC 6962 §2.1 as written, recursively over the leaves: the reference the stored
/// hashes are checked against.
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n as u64) as usize;
    if m < k {
        let mut path = reference_path(m, &leaves[..k]);
        path.push(reference_root(&leaves[k..]));
        path
    } else {
        let mut path = reference_path(m - k, &leaves[k..]);
        path.push(reference_root(&leaves[..k]));
        path
    }
}

fn reference_subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole { Vec::new() } else { vec![reference_root(leaves)] };
    }
    let k = split(n as u64) as usize;
    if m <= k {
        let mut proof = reference_subproof(m, &leaves[..k], whole);
        proof.push(reference_root(&leaves[k..]));
        proof
    } else {
        let mut proof = reference_subproof(m - k, &leaves[k..], false);
        proof.push(reference_root(&leaves[..k]));
        proof
    }
}

#[test]
fn roots_match_the_certificate_transparency_vectors() {
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let log = ct_log(8);
    for (size, expected) in roots.iter().enumerate() {
        assert_eq!(log.root(size as u64).unwrap(), h(expected), "root of {size} leaves");
        // A log that grew only to `size` agrees with the prefix of the larger one.
        assert_eq!(ct_log(size).root(size as u64).unwrap(), h(expected));
    }
}

#[test]
fn proofs_match_the_certificate_transparency_vectors() {
    let log = ct_log(8);
    let inclusion: [(u64, u64, &[&str]); 4] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, expected) in inclusion {
        let proof = log.inclusion_proof(index, size).unwrap();
        assert_eq!(proof, expected.iter().map(|e| h(e)).collect::<Vec<_>>(), "inclusion {index} in {size}");
        let leaf = leaf_hash(&ct_leaves()[index as usize]);
        verify_inclusion(index, size, &leaf, &proof, &log.root(size).unwrap()).unwrap();
    }
    let consistency: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, expected) in consistency {
        let proof = log.consistency_proof(old, new).unwrap();
        assert_eq!(proof, expected.iter().map(|e| h(e)).collect::<Vec<_>>(), "consistency {old} to {new}");
        verify_consistency(old, new, &log.root(old).unwrap(), &log.root(new).unwrap(), &proof).unwrap();
    }
}

#[test]
fn appending_stores_about_two_hashes_a_leaf_and_reads_only_left_siblings() {
    assert_eq!(append_needs(0), vec![]);
    assert_eq!(append_needs(1), vec![NodeId::new(0, 0)]);
    assert_eq!(append_needs(7), vec![NodeId::new(0, 6), NodeId::new(1, 2), NodeId::new(2, 0)]);
    let mut log = MemoryLog::new();
    for i in 0..1024u64 {
        log.push(leaf_hash(&i.to_be_bytes()));
    }
    let stored: usize = log.levels.iter().map(Vec::len).sum();
    assert_eq!(stored, 2047, "a perfect tree of 1024 leaves has 2047 nodes, each stored once");
    assert!(matches!(append(3, [0; 32], &[]), Err(ProofError::MissingHash { level: 0, index: 2 })));
}

#[test]
fn plans_read_a_logarithmic_number_of_stored_hashes() {
    let size = (1u64 << 40) - 1;
    assert_eq!(root_plan(size).nodes().len(), 40);
    for index in [0, 1, size / 3, size - 1] {
        let plan = inclusion_plan(index, size).unwrap();
        assert!(plan.len() <= 40);
        assert!(plan.nodes().len() <= 2 * 40, "{} nodes for leaf {index}", plan.nodes().len());
    }
    let plan = consistency_plan(size / 3, size).unwrap();
    assert!(plan.nodes().len() <= 2 * 40 + 1);
}

#[test]
fn bad_arguments_are_refused() {
    assert_eq!(inclusion_plan(5, 5), Err(ProofError::IndexOutOfRange { index: 5, size: 5 }));
    assert_eq!(consistency_plan(6, 5), Err(ProofError::SizesReversed { old: 6, new: 5 }));
    let log = ct_log(8);
    let root = log.root(8).unwrap();
    let leaf = leaf_hash(&ct_leaves()[0]);
    assert_eq!(verify_inclusion(8, 8, &leaf, &[], &root), Err(ProofError::IndexOutOfRange { index: 8, size: 8 }));
    assert_eq!(verify_consistency(3, 3, &root, &log.root(3).unwrap(), &[]), Err(ProofError::SameSizeDifferentRoots));
    assert_eq!(verify_consistency(0, 8, &empty_root(), &root, &[]), Ok(()));
    assert_eq!(verify_consistency(0, 8, &root, &root, &[]), Err(ProofError::OldRootMismatch));
    assert_eq!(verify_consistency(3, 8, &log.root(3).unwrap(), &root, &[]), Err(ProofError::WrongLength { got: 0 }));
    assert_eq!(
        inclusion_plan(1, 2).unwrap().assemble(|_| None),
        Err(ProofError::MissingHash { level: 0, index: 0 }),
        "a plan over hashes the store lacks says which"
    );
}

/// Up to 70 leaves: past every shape of tree below 64 and the first above, while the
/// recursive reference (cubic in the size) stays quick.
/// Every tree size up to 3,000: inclusion proofs of the first, the last and a middle
/// leaf, and consistency proofs from the sizes just before, from a power of two and
/// from size 1, all verify; the same proofs against the neighbouring size do not.
#[test]
fn proofs_verify_for_every_size_up_to_three_thousand() {
    let mut log = MemoryLog::new();
    let mut roots = vec![empty_root()];
    for i in 0..3000u64 {
        log.push(leaf_hash(&i.to_be_bytes()));
        roots.push(log.root(i + 1).unwrap());
    }
    for size in 1..=3000u64 {
        let root = roots[size as usize];
        for index in [0, size / 2, size - 1] {
            let leaf = log.stored(NodeId::new(0, index)).unwrap();
            let proof = log.inclusion_proof(index, size).unwrap();
            assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()), "leaf {index} of {size}");
            if size > 1 {
                let other = roots[size as usize - 1];
                assert!(verify_inclusion(index.min(size - 2), size - 1, &leaf, &proof, &other).is_err());
            }
        }
        let power = 1u64 << (63 - size.leading_zeros());
        for old in [1, size - 1, power, size / 3] {
            if old == 0 {
                continue;
            }
            let proof = log.consistency_proof(old, size).unwrap();
            assert_eq!(
                verify_consistency(old, size, &roots[old as usize], &root, &proof),
                Ok(()),
                "consistency {old} to {size}"
            );
            if old < size {
                assert!(verify_consistency(old, size, &roots[old as usize - 1], &root, &proof).is_err());
            }
        }
    }
}

fn leaves_strategy() -> impl Strategy<Value = Vec<Hash>> {
    prop::collection::vec(any::<[u8; 32]>(), 1..70)
}

proptest! {
    /// The hand-laid two-block node hash is SHA-256(0x01 ‖ left ‖ right).
    #[test]
    fn node_hash_is_sha256_of_its_message(left in any::<[u8; 32]>(), right in any::<[u8; 32]>()) {
        let mut message = vec![0x01];
        message.extend_from_slice(&left);
        message.extend_from_slice(&right);
        let expected: Hash = Sha256::digest(&message).into();
        prop_assert_eq!(node_hash(&left, &right), expected);
    }

    /// The hand-laid leaf hash is SHA-256(0x00 ‖ record) for records of any length,
    /// across every block boundary and past one call's worth of blocks.
    #[test]
    fn leaf_hash_is_sha256_of_its_message(record in prop::collection::vec(any::<u8>(), 0..1200)) {
        let mut message = vec![0x00];
        message.extend_from_slice(&record);
        let expected: Hash = Sha256::digest(&message).into();
        prop_assert_eq!(leaf_hash(&record), expected);
    }
}

/// Every length where the padding changes shape: the message (record plus prefix) ends
/// just before, at and after the 55-byte mark of a block, a block's end, and one call's
/// blocks.
#[test]
fn leaf_hash_at_block_boundaries() {
    for length in (0..=1100).filter(|n| matches!((n + 1) % 64, 54..=57 | 62..=63 | 0..=1) || n % 512 < 2) {
        let record: Vec<u8> = (0..length).map(|i| (i * 7 + 3) as u8).collect();
        let mut message = vec![0x00];
        message.extend_from_slice(&record);
        let expected: Hash = Sha256::digest(&message).into();
        assert_eq!(leaf_hash(&record), expected, "a record of {length} bytes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Roots and proofs from stored hashes equal RFC 6962's recursive definitions, for
    /// every prefix, and every proof verifies.
    #[test]
    fn stored_hashes_agree_with_the_recursive_definition(leaves in leaves_strategy()) {
        let mut log = MemoryLog::new();
        for leaf in &leaves {
            log.push(*leaf);
        }
        for size in 0..=leaves.len() {
            let root = log.root(size as u64).unwrap();
            prop_assert_eq!(root, reference_root(&leaves[..size]));
            for index in 0..size {
                let proof = log.inclusion_proof(index as u64, size as u64).unwrap();
                prop_assert_eq!(&proof, &reference_path(index, &leaves[..size]));
                prop_assert_eq!(verify_inclusion(index as u64, size as u64, &leaves[index], &proof, &root), Ok(()));
            }
        }
        let mut builder = RootBuilder::new();
        prop_assert_eq!(builder.root(), empty_root());
        for (i, leaf) in leaves.iter().enumerate() {
            builder.push(*leaf);
            prop_assert_eq!(builder.size(), i as u64 + 1);
            prop_assert_eq!(builder.root(), reference_root(&leaves[..=i]));
        }
        let new = leaves.len();
        let new_root = log.root(new as u64).unwrap();
        for old in 1..new {
            let proof = log.consistency_proof(old as u64, new as u64).unwrap();
            prop_assert_eq!(&proof, &reference_subproof(old, &leaves, true));
            let old_root = log.root(old as u64).unwrap();
            prop_assert_eq!(verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof), Ok(()));
        }
    }

    /// Any change to a proof, its leaf, its index, its size or its root fails it.
    #[test]
    fn a_tampered_inclusion_proof_fails(
        leaves in leaves_strategy(),
        pick in any::<prop::sample::Index>(),
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let mut log = MemoryLog::new();
        for leaf in &leaves {
            log.push(*leaf);
        }
        let size = leaves.len() as u64;
        let index = pick.index(leaves.len()) as u64;
        let root = log.root(size).unwrap();
        let proof = log.inclusion_proof(index, size).unwrap();
        let flip = |mut h: Hash| { h[byte] ^= 1 << bit; h };
        prop_assert!(verify_inclusion(index, size, &flip(leaves[index as usize]), &proof, &root).is_err());
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &flip(root)).is_err());
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = flip(bad[i]);
            prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &bad, &root).is_err());
        }
        if !proof.is_empty() {
            prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof[1..], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &longer, &root).is_err());
        if leaves[index as usize] != leaves[((index + 1) % size) as usize] {
            prop_assert!(verify_inclusion((index + 1) % size, size, &leaves[index as usize], &proof, &root).is_err());
        }
    }

    /// Any change to a consistency proof or either root fails it.
    #[test]
    fn a_tampered_consistency_proof_fails(
        leaves in prop::collection::vec(any::<[u8; 32]>(), 2..300),
        pick in any::<prop::sample::Index>(),
        byte in 0usize..32,
    ) {
        let mut log = MemoryLog::new();
        for leaf in &leaves {
            log.push(*leaf);
        }
        let new = leaves.len() as u64;
        let old = 1 + pick.index(leaves.len() - 1) as u64;
        let (old_root, new_root) = (log.root(old).unwrap(), log.root(new).unwrap());
        let proof = log.consistency_proof(old, new).unwrap();
        let flip = |mut h: Hash| { h[byte] ^= 0x80; h };
        prop_assert!(verify_consistency(old, new, &flip(old_root), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &flip(new_root), &proof).is_err());
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = flip(bad[i]);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
        }
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof[1..]).is_err());
        // A log whose old part was rewritten is not consistent with the old root.
        let mut rewritten = MemoryLog::new();
        for (i, leaf) in leaves.iter().enumerate() {
            rewritten.push(if i as u64 == old - 1 { flip(*leaf) } else { *leaf });
        }
        let forged = rewritten.consistency_proof(old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &old_root, &rewritten.root(new).unwrap(), &forged).is_err());
    }
}

/// A frontier appends as the stored-hash log does, and its root is the log's root at
/// every size, whether it was built leaf by leaf or resumed from stored hashes.
#[test]
fn frontier_appends_and_roots_as_the_stored_log() {
    let mut log = MemoryLog::new();
    let mut frontier = Frontier::new();
    assert_eq!(frontier.root(), empty_root());
    for i in 0..300u64 {
        let leaf = leaf_hash(&i.to_be_bytes());
        let mut completed = Vec::new();
        assert_eq!(frontier.push(leaf, &mut completed), i);
        log.push(leaf);
        for (node, hash) in &completed {
            assert_eq!(log.stored(*node), Some(*hash), "node {node:?} after leaf {i}");
        }
        let size = i + 1;
        assert_eq!(frontier.root(), log.root(size).unwrap(), "size {size}");
        let stored: Vec<Hash> = frontier_nodes(size).into_iter().map(|n| log.stored(n).unwrap()).collect();
        assert_eq!(Frontier::from_stored(size, &stored).unwrap(), frontier, "size {size}");
    }
    assert!(matches!(Frontier::from_stored(3, &[[0; 32]]), Err(ProofError::MissingHash { level: 0, index: 2 })));
}
