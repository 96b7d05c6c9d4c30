//! A fast hash for short keys a run chose itself (addresses, config words): FxHash, rustc's
//! multiply-rotate, hand-written here (a few lines) instead of a dependency. SipHash, std's
//! default, resists hash flooding, which buys nothing for such keys and costs several times
//! more per lookup on the strings of a few bytes these are.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

/// For `HashMap::with_hasher` / `HashSet<K, FxBuild>`.
pub type FxBuild = BuildHasherDefault<FxHasher>;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Equal keys hash equal, and the few bytes that tell keys apart (a port's last digit,
    /// a byte past the first 8) change the hash.
    #[test]
    fn tells_short_keys_apart() {
        let b = FxBuild::default();
        assert_eq!(
            b.hash_one("unix:/run/a.sock"),
            b.hash_one("unix:/run/a.sock")
        );
        let keys = [
            "127.0.0.1:9000",
            "127.0.0.1:9001",
            "unix:/run/php/a.sock",
            "unix:/run/php/b.sock",
            "fastcgi_param",
            "fastcgi_paran",
            "",
        ];
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| b.hash_one(k)).collect();
        assert_eq!(hashes.len(), keys.len());
    }
}
