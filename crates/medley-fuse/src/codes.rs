//! Vectors in int8 for scanning: one byte per coordinate and one scale per vector.
//!
//! A search over an in-memory list reads every member: at 384 floats a vector that is 1.5 KB,
//! and 20 probed lists of 100k vectors are about 10 MB from memory per query. The scan was
//! memory-bound (17% of the server's CPU at 50 clients, `cargo xtask bench serve`); in int8 it
//! reads a quarter of that. The scores it gives are approximate (within about 1e-3 for unit
//! vectors), so a search takes more candidates than it returns from them and scores those
//! again exactly ([`crate::Ivf::search`]).

use crate::kernel::{Isa, isa};

/// `n` vectors of width `d`, row-major, each as `scale * code`.
pub(crate) struct Codes {
    d: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// Each row's sum of codes: the VNNI scan's correction for the query's +128 offset.
    sums: Vec<i32>,
    /// Whether the scan runs on AVX-512 VNNI (integer dot products of the int8 codes with the
    /// query in int8): a quarter of the instructions per row of converting each code to float.
    vnni: bool,
    /// The instruction set the scan is compiled for (the k-means kernels' choice, so
    /// `MEDLEY_FUSE_KERNEL` caps both).
    isa: Isa,
}

impl Codes {
    /// `rows` is `n x d` row-major; each row is scaled so its largest coordinate is ±127.
    pub fn new(rows: &[f32], d: usize) -> Self {
        let n = rows.len().checked_div(d).unwrap_or(0);
        let mut codes = Vec::with_capacity(n * d);
        let mut scales = Vec::with_capacity(n);
        let mut sums = Vec::with_capacity(n);
        for row in rows.chunks_exact(d.max(1)).take(n) {
            let scale = int8_scale(row);
            let start = codes.len();
            codes.extend(row.iter().map(|v| quantize(*v, scale)));
            sums.push(codes[start..].iter().map(|&c| i32::from(c)).sum());
            scales.push(scale);
        }
        let isa = isa();
        Self { d, codes, scales, sums, vnni: vnni_scan(isa), isa }
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Bytes kept per vector of width `d`: a byte a coordinate, its scale and its code sum.
    pub const fn bytes_per_vector(d: usize) -> usize {
        d + std::mem::size_of::<f32>() + std::mem::size_of::<i32>()
    }

    /// Approximate inner products of `query` with every vector, into `out` (resized).
    pub fn scores(&self, query: &[f32], out: &mut Vec<f32>) {
        out.clear();
        if self.d == 0 || query.len() != self.d {
            out.resize(self.len(), 0.0);
            return;
        }
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F, BW and VNNI (checked in `new`).
            Isa::Avx512 if self.vnni => unsafe { scores_vnni(self, query, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F (checked in `isa`).
            Isa::Avx512 => unsafe { scores_avx512(self, query, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 and FMA (checked in `isa`).
            Isa::Avx2 => unsafe { scores_avx2(self, query, out) },
            Isa::Portable => scores_portable(self, query, out),
        }
    }
}

/// Sixteen running sums, so the compiler keeps them in vector lanes (a single `f32` sum
/// would have to be added in order, one coordinate at a time). Fixed-size chunks and plain loops: indexing a slice of unknown length keeps its bounds
/// checks (no vectorising), and iterator adapters such as `map` and `sum` can end up as calls
/// outside the `#[target_feature]` functions below, compiled for the baseline ISA.
#[inline(always)]
fn dot(query: &[f32], code: &[i8]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    for (q, c) in query.chunks_exact(L).zip(code.chunks_exact(L)) {
        if let (Ok(q), Ok(c)) = (<&[f32; L]>::try_from(q), <&[i8; L]>::try_from(c)) {
            for l in 0..L {
                acc[l] += q[l] * f32::from(c[l]);
            }
        }
    }
    let mut total = 0f32;
    for a in acc {
        total += a;
    }
    let full = query.len() / L * L;
    for (q, &c) in query[full..].iter().zip(&code[full.min(code.len())..]) {
        total += q * f32::from(c);
    }
    total
}

#[inline(always)]
fn scores_portable(codes: &Codes, query: &[f32], out: &mut Vec<f32>) {
    let d = codes.d;
    for (r, &scale) in codes.scales.iter().enumerate() {
        out.push(scale * dot(query, &codes.codes[r * d..(r + 1) * d]));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512(codes: &Codes, query: &[f32], out: &mut Vec<f32>) {
    scores_portable(codes, query, out);
}

/// The scale that maps `row`'s largest coordinate to ±127 (1 for a zero or non-finite row).
fn int8_scale(row: &[f32]) -> f32 {
    let top = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if top > 0.0 && top.is_finite() { top / 127.0 } else { 1.0 }
}

fn quantize(v: f32, scale: f32) -> i8 {
    (v / scale).round().clamp(-127.0, 127.0) as i8
}

/// Whether to scan with VNNI: where the kernels run AVX-512 (so `MEDLEY_FUSE_KERNEL` caps it
/// too) and the CPU has its byte and VNNI extensions.
#[cfg(target_arch = "x86_64")]
fn vnni_scan(isa: Isa) -> bool {
    isa == Isa::Avx512
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni_scan(_: Isa) -> bool {
    false
}

/// Scores with the query in int8 too: `vpdpbusd` multiplies unsigned by signed bytes, so the
/// query goes in with +128 and each row's `128 * sum(codes)` comes off. The query's rounding
/// adds an error about the size of the codes' own (both within about 2e-3 for unit vectors),
/// which the exact rescoring of the candidates takes out of the ranking.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn scores_vnni(codes: &Codes, query: &[f32], out: &mut Vec<f32>) {
    use std::arch::x86_64::{
        __m512i, _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_maskz_loadu_epi8, _mm512_reduce_add_epi32,
        _mm512_setzero_si512,
    };
    let d = codes.d;
    let q_scale = int8_scale(query);
    let offset: Vec<u8> = query.iter().map(|&v| (i16::from(quantize(v, q_scale)) + 128) as u8).collect();
    let (full, tail) = (d / 64, d % 64);
    let tail_mask = if tail == 0 { 0 } else { u64::MAX >> (64 - tail) };
    for (r, (&scale, &sum)) in codes.scales.iter().zip(&codes.sums).enumerate() {
        let row = &codes.codes[r * d..(r + 1) * d];
        let mut acc = _mm512_setzero_si512();
        for c in 0..full {
            // SAFETY: bytes c*64 .. c*64+64 are inside both slices (c < d / 64).
            let (q, x) = unsafe {
                (
                    _mm512_loadu_si512(offset.as_ptr().add(c * 64).cast::<__m512i>()),
                    _mm512_loadu_si512(row.as_ptr().add(c * 64).cast::<__m512i>()),
                )
            };
            acc = _mm512_dpbusd_epi32(acc, q, x);
        }
        if tail > 0 {
            // SAFETY: the mask reads only the `tail` bytes left in each slice.
            let (q, x) = unsafe {
                (
                    _mm512_maskz_loadu_epi8(tail_mask, offset.as_ptr().add(full * 64).cast::<i8>()),
                    _mm512_maskz_loadu_epi8(tail_mask, row.as_ptr().add(full * 64)),
                )
            };
            acc = _mm512_dpbusd_epi32(acc, q, x);
        }
        let dot = _mm512_reduce_add_epi32(acc) - 128 * sum;
        out.push(scale * q_scale * dot as f32);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_avx2(codes: &Codes, query: &[f32], out: &mut Vec<f32>) {
    scores_portable(codes, query, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_scores_are_close_to_the_float_inner_products() {
        let d = 384;
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let unit = |v: Vec<f32>| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let rows: Vec<f32> = (0..200).flat_map(|_| unit((0..d).map(|_| next()).collect())).collect();
        let query = unit((0..d).map(|_| next()).collect());
        let codes = Codes::new(&rows, d);
        let mut out = Vec::new();
        codes.scores(&query, &mut out);
        assert_eq!(out.len(), 200);
        let mut portable = Vec::new();
        scores_portable(&codes, &query, &mut portable);
        for (r, (&got, &same)) in out.iter().zip(&portable).enumerate() {
            let exact: f32 = rows[r * d..(r + 1) * d].iter().zip(&query).map(|(a, b)| a * b).sum();
            // With VNNI the query is rounded to int8 too.
            let tolerance = if codes.vnni { 4e-3 } else { 2e-3 };
            assert!((got - exact).abs() < tolerance, "row {r}: {got} against {exact}");
            assert!((same - exact).abs() < 2e-3, "row {r}: portable {same} against {exact}");
            if !codes.vnni {
                assert!((got - same).abs() < 1e-5, "the SIMD and portable scans agree");
            }
        }
        // A width that is not a multiple of 64 (the VNNI scan's masked tail).
        let d = 100;
        let rows: Vec<f32> = (0..50).flat_map(|_| unit((0..d).map(|_| next()).collect())).collect();
        let query = unit((0..d).map(|_| next()).collect());
        Codes::new(&rows, d).scores(&query, &mut out);
        for (r, &got) in out.iter().enumerate() {
            let exact: f32 = rows[r * d..(r + 1) * d].iter().zip(&query).map(|(a, b)| a * b).sum();
            assert!((got - exact).abs() < 8e-3, "width 100, row {r}: {got} against {exact}");
        }
        let d = 384;
        // A zero vector and a width of zero answer zeros rather than NaN.
        let zero = Codes::new(&vec![0.0; d], d);
        zero.scores(&query, &mut out);
        assert_eq!(out, vec![0.0]);
    }
}
