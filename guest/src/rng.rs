//! The guest CSPRNG (ChaCha20) behind WASI `random_get`, seeded with host entropy at
//! boot and reseeded with fresh entropy at every restore, so clones never share a stream.
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

static mut RNG: Option<ChaCha20Rng> = None;

#[allow(static_mut_refs)]
fn with<R>(f: impl FnOnce(&mut ChaCha20Rng) -> R) -> R {
    // SAFETY: the guest is single-threaded and never re-enters this function, so
    // this is the only live reference to RNG.
    let rng = unsafe { &mut RNG };
    f(rng.get_or_insert_with(|| ChaCha20Rng::from_seed([0; 32])))
}

/// Mixes `seed` into the generator (an all-zero seed is ignored).
pub fn reseed(seed: &[u8; 32]) {
    if seed.iter().all(|&b| b == 0) {
        return;
    }
    with(|r| {
        let mut mixed = [0u8; 32];
        r.fill_bytes(&mut mixed);
        for (m, s) in mixed.iter_mut().zip(seed) {
            *m ^= s;
        }
        *r = ChaCha20Rng::from_seed(mixed);
    });
}

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    with(|r| r.fill_bytes(buf));
}
