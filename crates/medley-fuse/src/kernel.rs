//! The hot loop: dot products of a block of rows against a packed set of centres.
//!
//! Centres are packed in panels of [`W`] columns (`panel[j * W + w]` = coordinate `j` of centre
//! `p * W + w`), padded with zero centres whose squared norm is `+inf`, so an argmin never picks
//! them. The kernel is register-blocked (8 rows x 32 centres with AVX-512, 4 x 16 with AVX2+FMA)
//! and picked at run time; a portable loop covers other CPUs and the last rows of a block.
//! Every output element is a sum over `j` in the same order whatever the thread count, so
//! results are bit-identical for a given instruction set.

pub(crate) const W: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

pub(crate) fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        // MEDLEY_FUSE_KERNEL=avx2|portable caps the kernel (for tests and comparisons).
        let cap = std::env::var("MEDLEY_FUSE_KERNEL").unwrap_or_default();
        if cap != "portable" {
            if cap != "avx2" && std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
    }
    Isa::Portable
}

/// The kernel the CPU runs (reported by the benchmark).
pub fn kernel_name() -> &'static str {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => "avx512",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => "avx2+fma",
        Isa::Portable => "portable",
    }
}

pub(crate) struct Packed {
    pub k: usize,
    pub d: usize,
    panels: Vec<f32>,
    /// Squared norms, `kpad` long; `+inf` for padding.
    pub norms: Vec<f32>,
    isa: Isa,
}

impl Packed {
    /// `c` is `k x d` row-major.
    pub fn new(c: &[f32], k: usize, d: usize) -> Self {
        debug_assert_eq!(c.len(), k * d);
        let np = k.div_ceil(W);
        let mut panels = vec![0f32; np * d * W];
        let mut norms = vec![f32::INFINITY; np * W];
        for (ci, row) in c.chunks_exact(d.max(1)).enumerate().take(k) {
            let (p, w) = (ci / W, ci % W);
            let base = p * d * W;
            for (j, &v) in row.iter().enumerate() {
                panels[base + j * W + w] = v;
            }
            norms[ci] = row.iter().map(|v| v * v).sum();
        }
        Packed { k, d, panels, norms, isa: isa() }
    }

    pub fn kpad(&self) -> usize {
        self.norms.len()
    }

    /// `out[r * kpad + c] = x_r . centre_c` for the `nrows` rows of `x` (row-major, `d` wide).
    pub fn dots(&self, x: &[f32], nrows: usize, out: &mut [f32]) {
        let (d, kpad) = (self.d, self.kpad());
        debug_assert!(x.len() >= nrows * d && out.len() >= nrows * kpad);
        let rows = match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 8,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 4,
            Isa::Portable => 1,
        };
        let full = nrows / rows * rows;
        self.simd(x, full, out);
        if full < nrows {
            // The last rows go through the same kernel, zero-padded, so a row's dot products do
            // not depend on where it sits in a batch.
            let left = nrows - full;
            let mut xs = vec![0f32; rows * d];
            xs[..left * d].copy_from_slice(&x[full * d..nrows * d]);
            let mut os = vec![0f32; rows * kpad];
            self.simd(&xs, rows, &mut os);
            out[full * kpad..nrows * kpad].copy_from_slice(&os[..left * kpad]);
        }
    }

    fn simd(&self, x: &[f32], nrows: usize, out: &mut [f32]) {
        let (d, kpad) = (self.d, self.kpad());
        assert!(x.len() >= nrows * d && out.len() >= nrows * kpad);
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F (checked in `isa`); bounds are asserted above.
            Isa::Avx512 => unsafe { avx512(&self.panels, d, x, nrows, kpad, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 and FMA (checked in `isa`); bounds are asserted above.
            Isa::Avx2 => unsafe { avx2(&self.panels, d, x, nrows, kpad, out) },
            Isa::Portable => portable(&self.panels, d, &x[..nrows * d], kpad, &mut out[..nrows * kpad]),
        }
    }
}

fn portable(panels: &[f32], d: usize, x: &[f32], kpad: usize, out: &mut [f32]) {
    if d == 0 {
        out.fill(0.0);
        return;
    }
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(kpad)) {
        for (p, op) in o.chunks_exact_mut(W).enumerate() {
            let panel = &panels[p * d * W..(p + 1) * d * W];
            let mut acc = [0f32; W];
            for (j, &a) in row.iter().enumerate() {
                let b = &panel[j * W..j * W + W];
                for w in 0..W {
                    acc[w] += a * b[w];
                }
            }
            op.copy_from_slice(&acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU must support the enabled features; `nrows` must be a multiple of the row block,
/// `x` hold `nrows * d` floats, `out` `nrows * kpad`, and `panels` `kpad * d` (as `simd`
/// asserts and `dots` pads).
unsafe fn avx512(panels: &[f32], d: usize, x: &[f32], nrows: usize, kpad: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    const R: usize = 8;
    let np = kpad / W;
    for p in 0..np {
        // SAFETY: panel p of kpad / W starts inside `panels` (kpad * d floats).
        let panel = unsafe { panels.as_ptr().add(p * d * W) };
        let mut r = 0;
        while r < nrows {
            // SAFETY: row r < nrows starts inside `x` (nrows * d floats).
            let xp = unsafe { x.as_ptr().add(r * d) };
            let mut acc = [_mm512_setzero_ps(); 2 * R];
            for j in 0..d {
                // SAFETY: column j < d of this panel is W floats inside `panels`.
                let (b0, b1) = unsafe { (_mm512_loadu_ps(panel.add(j * W)), _mm512_loadu_ps(panel.add(j * W + 16))) };
                for i in 0..R {
                    // SAFETY: r + i < nrows (rows come in whole blocks) and j < d: inside `x`.
                    let a = _mm512_set1_ps(unsafe { *xp.add(i * d + j) });
                    acc[2 * i] = _mm512_fmadd_ps(a, b0, acc[2 * i]);
                    acc[2 * i + 1] = _mm512_fmadd_ps(a, b1, acc[2 * i + 1]);
                }
            }
            for i in 0..R {
                // SAFETY: row r + i < nrows, W floats of panel p: inside `out` (nrows * kpad floats).
                let o = unsafe { out.as_mut_ptr().add((r + i) * kpad + p * W) };
                // SAFETY: `o` points at W floats inside `out` (see above).
                unsafe {
                    _mm512_storeu_ps(o, acc[2 * i]);
                    _mm512_storeu_ps(o.add(16), acc[2 * i + 1]);
                }
            }
            r += R;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// The CPU must support the enabled features; `nrows` must be a multiple of the row block,
/// `x` hold `nrows * d` floats, `out` `nrows * kpad`, and `panels` `kpad * d` (as `simd`
/// asserts and `dots` pads).
unsafe fn avx2(panels: &[f32], d: usize, x: &[f32], nrows: usize, kpad: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    const R: usize = 4;
    let np = kpad / W;
    for p in 0..np {
        for h in 0..2 {
            // SAFETY: panel p of kpad / W starts inside `panels` (kpad * d floats).
            let panel = unsafe { panels.as_ptr().add(p * d * W + h * 16) };
            let mut r = 0;
            while r < nrows {
                // SAFETY: row r < nrows starts inside `x` (nrows * d floats).
                let xp = unsafe { x.as_ptr().add(r * d) };
                let mut acc = [_mm256_setzero_ps(); 2 * R];
                for j in 0..d {
                    let (b0, b1) =
                        // SAFETY: column j < d of this panel is W floats inside `panels`.
                        unsafe { (_mm256_loadu_ps(panel.add(j * W)), _mm256_loadu_ps(panel.add(j * W + 8))) };
                    for i in 0..R {
                        // SAFETY: r + i < nrows (rows come in whole blocks) and j < d: inside `x`.
                        let a = _mm256_set1_ps(unsafe { *xp.add(i * d + j) });
                        acc[2 * i] = _mm256_fmadd_ps(a, b0, acc[2 * i]);
                        acc[2 * i + 1] = _mm256_fmadd_ps(a, b1, acc[2 * i + 1]);
                    }
                }
                for i in 0..R {
                    // SAFETY: row r + i < nrows, W floats of panel p: inside `out` (nrows * kpad floats).
                    let o = unsafe { out.as_mut_ptr().add((r + i) * kpad + p * W + h * 16) };
                    // SAFETY: `o` points at W floats inside `out` (see above).
                    unsafe {
                        _mm256_storeu_ps(o, acc[2 * i]);
                        _mm256_storeu_ps(o.add(8), acc[2 * i + 1]);
                    }
                }
                r += R;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_naive() {
        let (n, k, d) = (19, 37, 13);
        let x: Vec<f32> = (0..n * d).map(|i| ((i * 7919 % 101) as f32 - 50.0) / 17.0).collect();
        let c: Vec<f32> = (0..k * d).map(|i| ((i * 104729 % 97) as f32 - 48.0) / 13.0).collect();
        let p = Packed::new(&c, k, d);
        let mut out = vec![0f32; n * p.kpad()];
        p.dots(&x, n, &mut out);
        for r in 0..n {
            for ci in 0..k {
                let want: f32 = (0..d).map(|j| x[r * d + j] * c[ci * d + j]).sum();
                let got = out[r * p.kpad() + ci];
                assert!((want - got).abs() <= 1e-3 * (1.0 + want.abs()), "{r} {ci}: {want} vs {got}");
            }
            assert!(p.norms[k..].iter().all(|v| v.is_infinite()));
        }
        // A row's dot products do not depend on its place in the batch, bit for bit.
        for r in [0, 9, 17, 18] {
            let mut one = vec![0f32; p.kpad()];
            p.dots(&x[r * d..(r + 1) * d], 1, &mut one);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one), bits(&out[r * p.kpad()..(r + 1) * p.kpad()]), "row {r}");
        }
    }
}
