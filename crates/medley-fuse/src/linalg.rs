//! Symmetric eigendecomposition for PCA: cyclic Jacobi for small matrices, subspace iteration
//! with Rayleigh-Ritz (Jacobi on the small projected matrix) for the top components of large ones.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Matrices up to this size get a full Jacobi decomposition.
const JACOBI_MAX: usize = 384;

/// All eigenpairs of the symmetric `n x n` row-major `a`, eigenvalues descending; eigenvector
/// `i` is row `i` of the returned matrix.
pub(crate) fn jacobi(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += a[p * n + q] * a[p * n + q];
            }
        }
        if off <= 1e-30 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]).then(i.cmp(&j)));
    let vals = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vecs = vec![0f64; n * n];
    for (r, &i) in order.iter().enumerate() {
        for k in 0..n {
            vecs[r * n + k] = v[k * n + i];
        }
    }
    (vals, vecs)
}

/// Orthonormalise the `p` rows (each `d` long) of `q` in place (modified Gram-Schmidt, twice).
fn orthonormalise(q: &mut [f64], d: usize, p: usize) {
    for _ in 0..2 {
        for i in 0..p {
            let (done, rest) = q.split_at_mut(i * d);
            let qi = &mut rest[..d];
            for j in 0..i {
                let qj = &done[j * d..(j + 1) * d];
                let dot: f64 = qi.iter().zip(qj).map(|(a, b)| a * b).sum();
                qi.iter_mut().zip(qj).for_each(|(a, b)| *a -= dot * b);
            }
            let nrm = qi.iter().map(|a| a * a).sum::<f64>().sqrt();
            if nrm > 1e-300 {
                qi.iter_mut().for_each(|a| *a /= nrm);
            }
        }
    }
}

/// `rows_out[j] = a * rows_in[j]` for the symmetric `d x d` `a`.
fn mul_rows(a: &[f64], d: usize, rows: &[f64]) -> Vec<f64> {
    let mut out = vec![0f64; rows.len()];
    out.par_chunks_mut(d).zip(rows.par_chunks(d)).for_each(|(o, x)| {
        for (i, oi) in o.iter_mut().enumerate() {
            *oi = a[i * d..(i + 1) * d].iter().zip(x).map(|(p, q)| p * q).sum();
        }
    });
    out
}

/// The top `k` eigenpairs of the symmetric `d x d` `a`, eigenvalues descending, eigenvectors as
/// rows; each eigenvector's largest coordinate is made positive, so the result is unique.
pub(crate) fn top_eigen(a: &[f64], d: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let k = k.min(d);
    let (vals, mut vecs) = if d <= JACOBI_MAX {
        let (v, e) = jacobi(a, d);
        (v[..k].to_vec(), e[..k * d].to_vec())
    } else {
        let p = (k + 8).min(d);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut q: Vec<f64> = (0..p * d).map(|_| rng.random::<f64>() - 0.5).collect();
        orthonormalise(&mut q, d, p);
        let mut prev: Vec<f64> = vec![];
        let mut ritz = (vec![], vec![]);
        for it in 0..500 {
            let z = mul_rows(a, d, &q);
            if it % 5 == 4 {
                // Rayleigh-Ritz on span(q): T = Q A Q^T.
                let mut t = vec![0f64; p * p];
                for i in 0..p {
                    for j in 0..p {
                        t[i * p + j] =
                            q[i * d..(i + 1) * d].iter().zip(&z[j * d..(j + 1) * d]).map(|(x, y)| x * y).sum();
                    }
                }
                for i in 0..p {
                    for j in 0..i {
                        let m = 0.5 * (t[i * p + j] + t[j * p + i]);
                        t[i * p + j] = m;
                        t[j * p + i] = m;
                    }
                }
                let (tv, te) = jacobi(&t, p);
                let mut v = vec![0f64; p * d];
                for r in 0..p {
                    for s in 0..p {
                        let w = te[r * p + s];
                        v[r * d..(r + 1) * d].iter_mut().zip(&q[s * d..(s + 1) * d]).for_each(|(o, x)| *o += w * x);
                    }
                }
                let scale = tv.first().copied().unwrap_or(0.0).abs().max(f64::MIN_POSITIVE);
                let converged = prev.len() == k && prev.iter().zip(&tv).all(|(a, b)| (a - b).abs() <= 1e-12 * scale);
                prev = tv[..k].to_vec();
                ritz = (tv, v);
                if converged {
                    break;
                }
            }
            q = z;
            orthonormalise(&mut q, d, p);
        }
        (ritz.0[..k].to_vec(), ritz.1[..k * d].to_vec())
    };
    for row in vecs.chunks_exact_mut(d) {
        let big = row.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs())).unwrap_or(0.0);
        if big < 0.0 {
            row.iter_mut().for_each(|x| *x = -*x);
        }
    }
    (vals, vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises_a_known_matrix() {
        // [[2,1],[1,2]]: eigenvalues 3 and 1, eigenvectors (1,1)/sqrt2 and (1,-1)/sqrt2.
        let (v, e) = jacobi(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((v[0] - 3.0).abs() < 1e-12 && (v[1] - 1.0).abs() < 1e-12);
        assert!((e[0].abs() - 0.5f64.sqrt()).abs() < 1e-12 && (e[0] - e[1]).abs() < 1e-12);
        assert!((e[2] + e[3]).abs() < 1e-12);
    }

    #[test]
    fn subspace_iteration_matches_jacobi() {
        // A 400 x 400 matrix with a known spectrum: 100 * 0.9^r in a rotated basis.
        let d = 400;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut q: Vec<f64> = (0..d * d).map(|_| rng.random::<f64>() - 0.5).collect();
        orthonormalise(&mut q, d, d);
        let mut a = vec![0f64; d * d];
        for (r, row) in q.chunks_exact(d).enumerate() {
            let lam = 100.0 * 0.9f64.powi(r as i32);
            for i in 0..d {
                for j in 0..d {
                    a[i * d + j] += lam * row[i] * row[j];
                }
            }
        }
        let (vals, vecs) = top_eigen(&a, d, 3, 1);
        for i in 0..3 {
            assert!((vals[i] - 100.0 * 0.9f64.powi(i as i32)).abs() < 1e-6, "{vals:?}");
            let dot: f64 = vecs[i * d..(i + 1) * d].iter().zip(&q[i * d..(i + 1) * d]).map(|(a, b)| a * b).sum();
            assert!(dot.abs() > 0.999, "{i}: {dot}");
        }
    }
}
