//! The Merkle tree of RFC 6962 §2.1 (RFC 9162 §2.1), over which a tenant's timeline
//! and audit logs are kept, and its inclusion and consistency proofs.
//!
//! - A leaf's hash is `SHA-256(0x00 ‖ record bytes)`, an interior node's
//!   `SHA-256(0x01 ‖ left ‖ right)`, and the tree of no leaves has the hash of the empty
//!   string. The tree of `n` leaves splits at the largest power of two below `n`.
//! - **Stored hashes.** A store keeps the hash of every *complete* subtree: `2^level`
//!   leaves starting at leaf `index · 2^level`, named by a [`NodeId`]. Appending a leaf
//!   completes the leaf itself and every subtree it closes ([`append`]): on average two
//!   hashes a leaf, never rewritten. Any subtree a proof names is a complete subtree or
//!   a right edge made of at most `log2 n` complete ones, so a root or a proof is a
//!   [`ProofPlan`]: the stored hashes to read ([`ProofPlan::nodes`], O(log n) of them),
//!   then [`ProofPlan::assemble`]. Nothing is ever rebuilt from the leaves.
//! - **Proofs** are those of RFC 6962 §2.1.1 (`PATH`) and §2.1.2 (`PROOF`), hashes in
//!   the order the RFC lists them; [`verify_inclusion`] and [`verify_consistency`] are
//!   the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! Everything here is pure; reading the stored hashes is the caller's IO.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root hash of the tree with no leaves: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// One 64-byte block of SHA-256's input.
type Block = sha2::digest::generic_array::GenericArray<u8, sha2::digest::consts::U64>;

/// The blocks handed to the compression function at once.
const BLOCKS_PER_CALL: usize = 8;

/// SHA-256 of `prefix ‖ data`, with the padded message laid out block by block and
/// handed to the compression function [`BLOCKS_PER_CALL`] blocks at a time.
///
/// Leaves and interior nodes are hashed one after the other millions of times when an
/// export is verified; the incremental hasher would buffer the one-byte prefix, copy,
/// and call the compression function three times for a typical record. Tested against
/// [`Sha256`] on arbitrary inputs.
fn prefixed_hash(prefix: u8, data: &[u8]) -> Hash {
    let length = data.len() + 1;
    // The message, a 1 bit, zeros, and the length in bits (FIPS 180-4 §5.1.1).
    let total_blocks = (length + 1 + 8).div_ceil(64);
    let mut state = H0;
    let mut blocks = [Block::default(); BLOCKS_PER_CALL];
    let mut first = 0;
    while first < total_blocks {
        let count = (total_blocks - first).min(BLOCKS_PER_CALL);
        for (i, block) in blocks[..count].iter_mut().enumerate() {
            let start = (first + i) * 64;
            let end = start + 64;
            block.fill(0);
            if start == 0 {
                block[0] = prefix;
            }
            let (from, to) = (start.max(1), end.min(length));
            if from < to {
                block[from - start..to - start].copy_from_slice(&data[from - 1..to - 1]);
            }
            if (start..end).contains(&length) {
                block[length - start] = 0x80;
            }
            if first + i + 1 == total_blocks {
                block[56..].copy_from_slice(&(length as u64 * 8).to_be_bytes());
            }
        }
        sha2::compress256(&mut state, &blocks[..count]);
        first += count;
    }
    state_bytes(state)
}

/// The hash of a leaf whose record bytes are `data`: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    prefixed_hash(0x00, data)
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
///
/// The message is always 65 bytes, so its two padded blocks are laid out here directly.
/// Tested against [`Sha256`] on arbitrary inputs.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut blocks = [Block::default(); 2];
    blocks[0][0] = 0x01;
    blocks[0][1..33].copy_from_slice(left);
    blocks[0][33..64].copy_from_slice(&right[..31]);
    blocks[1][0] = right[31];
    // Padding (FIPS 180-4 §5.1.1): a 1 bit, zeros, and the length in bits, 65 · 8.
    blocks[1][1] = 0x80;
    blocks[1][56..64].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = H0;
    sha2::compress256(&mut state, &blocks);
    state_bytes(state)
}

/// The hash a final state stands for: its words, big-endian.
fn state_bytes(state: [u32; 8]) -> Hash {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// A complete subtree, whose hash a store keeps: the `2^level` leaves from leaf
/// `index · 2^level` on. Level 0 is the leaves themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// The first leaf under this node.
    pub const fn first_leaf(self) -> u64 {
        self.index << self.level
    }

    /// How many leaves are under this node.
    pub const fn leaves(self) -> u64 {
        1 << self.level
    }
}

/// Why a proof could not be built or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {old} is larger than tree size {new}; a log only grows")]
    SizesReversed { old: u64, new: u64 },
    #[error("the proof has the wrong number of hashes ({got}) for these tree sizes")]
    WrongLength { got: usize },
    #[error("the proof leads to a different root hash than the one given")]
    RootMismatch,
    #[error("the proof leads to a different root hash for the old tree than the one given")]
    OldRootMismatch,
    #[error("the same tree size with two different root hashes")]
    SameSizeDifferentRoots,
    #[error("tree size {size} is beyond the {held} leaves the log holds")]
    BeyondLog { size: u64, held: u64 },
    #[error("stored hash {level}/{index} is missing")]
    MissingHash { level: u8, index: u64 },
}

/// The stored hashes that appending leaf number `index` (0-based) needs, as
/// [`append`] takes them: the left sibling of each subtree the leaf completes, lowest
/// first.
pub fn append_needs(index: u64) -> Vec<NodeId> {
    let mut needs = Vec::new();
    let (mut level, mut i) = (0u8, index);
    while i & 1 == 1 {
        needs.push(NodeId::new(level, i - 1));
        i >>= 1;
        level += 1;
    }
    needs
}

/// The stored hashes that appending leaf number `index`, of hash `leaf`, completes:
/// the leaf, then each subtree it closes, lowest first. `left_siblings` are the
/// hashes of [`append_needs`]`(index)`, in that order.
pub fn append(index: u64, leaf: Hash, left_siblings: &[Hash]) -> Result<Vec<(NodeId, Hash)>, ProofError> {
    let needs = append_needs(index);
    if left_siblings.len() != needs.len() {
        let missing = needs.get(left_siblings.len()).copied().unwrap_or(NodeId::new(0, index));
        return Err(ProofError::MissingHash { level: missing.level, index: missing.index });
    }
    let mut completed = Vec::with_capacity(needs.len() + 1);
    let (mut node, mut hash) = (NodeId::new(0, index), leaf);
    completed.push((node, hash));
    for sibling in left_siblings {
        hash = node_hash(sibling, &hash);
        node = NodeId::new(node.level + 1, node.index >> 1);
        completed.push((node, hash));
    }
    Ok(completed)
}

/// The stored hashes that hold a log of `size` leaves together: the complete subtrees
/// covering leaves `0..size`, largest first, one for each bit set in `size`. A
/// [`Frontier`] is made from them.
pub fn frontier_nodes(size: u64) -> Vec<NodeId> {
    let mut nodes = Vec::new();
    range_nodes(0, size, &mut nodes);
    nodes
}

/// The right edge of a log: the hash of each complete subtree of [`frontier_nodes`].
/// It is all that appending needs, and the root hash folds from it, so a writer reads
/// O(log n) stored hashes once per batch, then appends any number of leaves in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(node, hash)` of [`frontier_nodes`]`(size)`, largest subtree first.
    nodes: Vec<(NodeId, Hash)>,
}

impl Frontier {
    /// The frontier of the empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of a log of `size` leaves, from the hashes of
    /// [`frontier_nodes`]`(size)` in that order.
    pub fn from_stored(size: u64, hashes: &[Hash]) -> Result<Self, ProofError> {
        let needed = frontier_nodes(size);
        if hashes.len() != needed.len() {
            let missing = needed.get(hashes.len()).copied().unwrap_or(NodeId::new(0, size));
            return Err(ProofError::MissingHash { level: missing.level, index: missing.index });
        }
        Ok(Self { size, nodes: needed.into_iter().zip(hashes.iter().copied()).collect() })
    }

    /// How many leaves the log holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf by its hash, adding to `completed` the stored hashes it completes
    /// (as [`append`] returns them); returns the leaf's index.
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<(NodeId, Hash)>) -> u64 {
        let index = self.size;
        let siblings = index.trailing_ones() as usize;
        let keep = self.nodes.len() - siblings;
        let left: Vec<Hash> = self.nodes[keep..].iter().rev().map(|&(_, hash)| hash).collect();
        let made = append(index, leaf, &left).expect("the frontier holds every left sibling");
        let top = *made.last().expect("append always completes the leaf");
        completed.extend(made);
        self.nodes.truncate(keep);
        self.nodes.push(top);
        self.size += 1;
        index
    }

    /// The root hash of the log.
    pub fn root(&self) -> Hash {
        let mut hashes = self.nodes.iter().rev().map(|&(_, hash)| hash);
        let Some(mut folded) = hashes.next() else {
            return empty_root();
        };
        for left in hashes {
            folded = node_hash(&left, &folded);
        }
        folded
    }
}

/// The root of a log built one leaf at a time, without storing anything but the
/// right edge: what a verifier needs to recompute a root from an export. Unlike
/// [`Frontier`], it reports no completed subtrees and allocates nothing per leaf.
#[derive(Debug, Clone)]
pub struct RootBuilder {
    size: u64,
    /// The complete subtrees of the right edge, largest first; `stack[..depth]` is live.
    stack: [Hash; 64],
    depth: usize,
}

impl Default for RootBuilder {
    fn default() -> Self {
        Self { size: 0, stack: [[0; 32]; 64], depth: 0 }
    }
}

impl RootBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf by its hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        // Each trailing one of the index is a complete left sibling to merge with.
        for _ in 0..self.size.trailing_ones() {
            self.depth -= 1;
            hash = node_hash(&self.stack[self.depth], &hash);
        }
        self.stack[self.depth] = hash;
        self.depth += 1;
        self.size += 1;
    }

    /// The root hash of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut live = self.stack[..self.depth].iter().rev();
        let Some(&first) = live.next() else {
            return empty_root();
        };
        live.fold(first, |folded, left| node_hash(left, &folded))
    }
}

/// The complete subtrees that make up leaves `start..end`, left to right. For the
/// ranges the RFC's trees and proofs name (`start` a multiple of a power of two no
/// smaller than `end - start`), their hashes fold from the right into the range's hash.
fn range_nodes(start: u64, end: u64, out: &mut Vec<NodeId>) {
    let mut at = start;
    while at < end {
        let mut level = if at == 0 { 63 } else { at.trailing_zeros() as u8 };
        while level > 0 && (1u64 << level > end - at) {
            level -= 1;
        }
        out.push(NodeId::new(level, at >> level));
        at += 1 << level;
    }
}

/// The largest power of two smaller than `n` (`n` ≥ 2): where RFC 6962 splits a tree.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// What a root hash or a proof is made of: ranges of leaves, each to be hashed from
/// the stored complete subtrees under it. Read [`ProofPlan::nodes`] from the store,
/// then [`ProofPlan::assemble`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    /// Leaf ranges `start..end`, in the order the hashes appear in the result.
    ranges: Vec<(u64, u64)>,
}

impl ProofPlan {
    /// Every stored hash the plan needs, each once, in ascending order.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut nodes = Vec::new();
        for &(start, end) in &self.ranges {
            range_nodes(start, end, &mut nodes);
        }
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The hashes of the plan's ranges, in order, from the stored hashes `lookup` gives.
    pub fn assemble(&self, mut lookup: impl FnMut(NodeId) -> Option<Hash>) -> Result<Vec<Hash>, ProofError> {
        let mut nodes = Vec::new();
        self.ranges
            .iter()
            .map(|&(start, end)| {
                nodes.clear();
                range_nodes(start, end, &mut nodes);
                let mut hashes = nodes
                    .iter()
                    .rev()
                    .map(|&node| lookup(node).ok_or(ProofError::MissingHash { level: node.level, index: node.index }));
                let mut folded = hashes.next().expect("a range holds at least one leaf")?;
                for left in hashes {
                    folded = node_hash(&left?, &folded);
                }
                Ok(folded)
            })
            .collect()
    }

    /// How many hashes the plan yields.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// The plan of the root hash of the tree of the first `size` leaves (`size` ≥ 1; the
/// empty tree's root is [`empty_root`]): one hash, from at most `log2 size` stored ones.
pub fn root_plan(size: u64) -> ProofPlan {
    ProofPlan { ranges: if size == 0 { Vec::new() } else { vec![(0, size)] } }
}

/// The root hash of the tree of the first `size` leaves, from stored hashes.
pub fn root(size: u64, lookup: impl FnMut(NodeId) -> Option<Hash>) -> Result<Hash, ProofError> {
    Ok(root_plan(size).assemble(lookup)?.first().copied().unwrap_or_else(empty_root))
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1
/// `PATH`): the sibling subtrees from the leaf up to the root.
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // Walk down from the root, then list the siblings bottom-up.
    let mut siblings = Vec::new();
    let (mut start, mut end) = (0, size);
    while end - start > 1 {
        let k = split(end - start);
        if index - start < k {
            siblings.push((start + k, end));
            end = start + k;
        } else {
            siblings.push((start, start + k));
            start += k;
        }
    }
    siblings.reverse();
    Ok(ProofPlan { ranges: siblings })
}

/// The consistency proof between the trees of `old` and `new` leaves (RFC 6962 §2.1.2
/// `PROOF`). Empty when `old` is 0 or equals `new`: nothing to prove.
pub fn consistency_plan(old: u64, new: u64) -> Result<ProofPlan, ProofError> {
    if old > new {
        return Err(ProofError::SizesReversed { old, new });
    }
    let mut ranges = Vec::new();
    if old == 0 || old == new {
        return Ok(ProofPlan { ranges });
    }
    // SUBPROOF(m, D[start..end], b), unrolled: each step goes down one side.
    let (mut m, mut start, mut end, mut whole) = (old, 0u64, new, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                ranges.push((start, end));
            }
            break;
        }
        let k = split(n);
        if m <= k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
            whole = false;
        }
    }
    ranges.reverse();
    Ok(ProofPlan { ranges })
}

/// Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves whose
/// root hash is `root`, given its audit path (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength { got: proof.len() });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of
/// `new` leaves with root `new_root`, given the consistency proof (RFC 9162 §2.1.4.2;
/// a tree of size 0 is a prefix of every tree, with an empty proof).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesReversed { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        return if old_root == new_root { Ok(()) } else { Err(ProofError::SameSizeDifferentRoots) };
    }
    if old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        return if *old_root == empty_root() { Ok(()) } else { Err(ProofError::OldRootMismatch) };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength { got: 0 });
    }
    // With `old` a power of two, the old root is the proof's implicit first hash.
    let mut path = proof.iter();
    let first = if old.is_power_of_two() { *old_root } else { *path.next().expect("checked non-empty") };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in path {
        if s == 0 {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength { got: proof.len() });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// A log held in memory with every stored hash, as a store keeps them: for
/// recomputing a log from its records (`custos forensic verify-log`), and for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    /// `levels[l][i]` is the hash of [`NodeId`] `(l, i)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leaves the log holds.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Appends a leaf by its hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.size();
        let siblings: Vec<Hash> =
            append_needs(index).into_iter().map(|n| self.levels[n.level as usize][n.index as usize]).collect();
        for (node, hash) in append(index, leaf, &siblings).expect("every sibling is at hand") {
            let level = node.level as usize;
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
        }
        index
    }

    /// The stored hash of `node`, if the log has completed it.
    pub fn stored(&self, node: NodeId) -> Option<Hash> {
        self.levels.get(node.level as usize)?.get(usize::try_from(node.index).ok()?).copied()
    }

    /// The root hash of the log's first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size() {
            return Err(ProofError::BeyondLog { size, held: self.size() });
        }
        root(size, |node| self.stored(node))
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() {
            return Err(ProofError::BeyondLog { size, held: self.size() });
        }
        inclusion_plan(index, size)?.assemble(|node| self.stored(node))
    }

    /// The consistency proof from the first `old` leaves to the first `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        if new > self.size() {
            return Err(ProofError::BeyondLog { size: new, held: self.size() });
        }
        consistency_plan(old, new)?.assemble(|node| self.stored(node))
    }
}

#[cfg(test)]
mod tests;
