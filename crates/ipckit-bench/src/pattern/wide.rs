//! The vector versions of [`fill`](super::fill) and [`verify`](super::verify), chosen by CPU
//! feature at run time.

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
fn fill_avx512(msg: &mut [u8], seq: u64) {
    super::fill_words(msg, seq);
}

#[target_feature(enable = "avx2")]
fn fill_avx2(msg: &mut [u8], seq: u64) {
    super::fill_words(msg, seq);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
fn verify_avx512(msg: &[u8], seq: u64) -> bool {
    super::verify_words(msg, seq)
}

#[target_feature(enable = "avx2")]
fn verify_avx2(msg: &[u8], seq: u64) -> bool {
    super::verify_words(msg, seq)
}

fn avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
}

#[inline]
pub(super) fn fill(msg: &mut [u8], seq: u64) {
    if avx512() {
        // SAFETY: the CPU has AVX-512F/BW/VL and AVX2 (checked just above).
        unsafe { fill_avx512(msg, seq) }
    } else if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { fill_avx2(msg, seq) }
    } else {
        super::fill_words(msg, seq);
    }
}

#[inline]
pub(super) fn verify(msg: &[u8], seq: u64) -> bool {
    if avx512() {
        // SAFETY: the CPU has AVX-512F/BW/VL and AVX2 (checked just above).
        unsafe { verify_avx512(msg, seq) }
    } else if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { verify_avx2(msg, seq) }
    } else {
        super::verify_words(msg, seq)
    }
}
