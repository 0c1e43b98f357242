//! One level of k-means: k-means++ seeding on a sample, Lloyd iterations (assignment in
//! parallel over fixed blocks of rows, centroid sums in parallel over blocks of dimensions, in
//! f64 and in row order), optional capacity-constrained balanced assignment, and empty-cluster
//! repair. Nothing depends on the thread count, so a seed gives bit-identical centroids.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::kernel::Packed;

/// Rows per parallel task in the assignment step.
const BLOCK: usize = 256;
/// Dimensions per parallel task in the update step.
const DIM_BLOCK: usize = 16;
/// Candidates per point kept for balanced assignment.
const BALANCE_CANDIDATES: usize = 8;
/// Relative perturbation when an empty cluster takes half of the largest one.
const SPLIT_EPS: f32 = 1.0 / 1024.0;

pub(crate) struct Level {
    pub centroids: Vec<f32>,
    pub assign: Vec<u32>,
    pub counts: Vec<u64>,
}

/// Nearest centre of each row: (index, squared distance).
pub(crate) fn nearest(data: &[f32], d: usize, c: &Packed) -> (Vec<u32>, Vec<f32>) {
    let n = data.len().checked_div(d).unwrap_or(0);
    let mut idx = vec![0u32; n];
    let mut dist = vec![0f32; n];
    let kpad = c.kpad();
    data.par_chunks(BLOCK * d).zip(idx.par_chunks_mut(BLOCK)).zip(dist.par_chunks_mut(BLOCK)).for_each_init(
        || vec![0f32; BLOCK * kpad],
        |buf, ((x, ib), db)| {
            let rows = ib.len();
            c.dots(x, rows, buf);
            for r in 0..rows {
                let o = &buf[r * kpad..(r + 1) * kpad];
                let (mut best, mut bi) = (f32::INFINITY, 0usize);
                for (j, (&dot, &nrm)) in o.iter().zip(&c.norms).enumerate() {
                    let v = nrm - 2.0 * dot;
                    if v < best {
                        best = v;
                        bi = j;
                    }
                }
                let xr = &x[r * d..(r + 1) * d];
                let xn: f32 = xr.iter().map(|v| v * v).sum();
                ib[r] = bi as u32;
                db[r] = (xn + best).max(0.0);
            }
        },
    );
    (idx, dist)
}

/// Assignment under capacity `ceil(n / k)`: every point lists its nearest candidates; (distance,
/// point, rank) triples are taken in increasing order and a point goes to its candidate while
/// that cluster has room; points whose candidates all filled up take the nearest cluster with room.
fn balanced(data: &[f32], d: usize, c: &Packed) -> Vec<u32> {
    let n = data.len() / d;
    let k = c.k;
    let cap = n.div_ceil(k) as u64;
    let t = BALANCE_CANDIDATES.min(k);
    let kpad = c.kpad();
    let mut cand: Vec<(f32, u32, u32)> = vec![(0.0, 0, 0); n * t];
    data.par_chunks(BLOCK * d).zip(cand.par_chunks_mut(BLOCK * t)).enumerate().for_each_init(
        || (vec![0f32; BLOCK * kpad], Vec::<(f32, u32)>::with_capacity(kpad)),
        |(buf, row), (bi, (x, cb))| {
            let rows = cb.len() / t;
            c.dots(x, rows, buf);
            for r in 0..rows {
                row.clear();
                row.extend(
                    buf[r * kpad..r * kpad + k]
                        .iter()
                        .zip(&c.norms)
                        .enumerate()
                        .map(|(j, (&dot, &nrm))| (nrm - 2.0 * dot, j as u32)),
                );
                row.select_nth_unstable_by(t - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let point = (bi * BLOCK + r) as u32;
                for (s, &(v, j)) in row[..t].iter().enumerate() {
                    cb[r * t + s] = (v, point, j);
                }
            }
        },
    );
    cand.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    const NONE: u32 = u32::MAX;
    let mut assign = vec![NONE; n];
    let mut counts = vec![0u64; k];
    for &(_, p, j) in &cand {
        if assign[p as usize] == NONE && counts[j as usize] < cap {
            assign[p as usize] = j;
            counts[j as usize] += 1;
        }
    }
    let mut buf = vec![0f32; kpad];
    for p in 0..n {
        if assign[p] != NONE {
            continue;
        }
        c.dots(&data[p * d..(p + 1) * d], 1, &mut buf);
        let j = (0..k)
            .filter(|&j| counts[j] < cap)
            .min_by(|&a, &b| (c.norms[a] - 2.0 * buf[a]).total_cmp(&(c.norms[b] - 2.0 * buf[b])))
            // `cap` is chosen so that k * cap >= n: some cluster always has room.
            .expect("n <= k * cap leaves room");
        assign[p] = j as u32;
        counts[j] += 1;
    }
    assign
}

/// Centroids as means of their points, summed in f64 in row order, in parallel over dimensions.
fn update(data: &[f32], d: usize, k: usize, assign: &[u32], old: &[f32]) -> (Vec<f32>, Vec<u64>) {
    let mut counts = vec![0u64; k];
    for &a in assign {
        counts[a as usize] += 1;
    }
    let nb = d.div_ceil(DIM_BLOCK);
    let blocks: Vec<Vec<f64>> = (0..nb)
        .into_par_iter()
        .map(|b| {
            let (lo, hi) = (b * DIM_BLOCK, ((b + 1) * DIM_BLOCK).min(d));
            let w = hi - lo;
            let mut s = vec![0f64; k * w];
            for (i, &a) in assign.iter().enumerate() {
                let src = &data[i * d + lo..i * d + hi];
                let dst = &mut s[a as usize * w..a as usize * w + w];
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o += v as f64;
                }
            }
            s
        })
        .collect();
    let mut c = old.to_vec();
    for (b, s) in blocks.iter().enumerate() {
        let (lo, hi) = (b * DIM_BLOCK, ((b + 1) * DIM_BLOCK).min(d));
        let w = hi - lo;
        for ci in 0..k {
            if counts[ci] > 0 {
                let inv = 1.0 / counts[ci] as f64;
                for t in 0..w {
                    c[ci * d + lo + t] = (s[ci * w + t] * inv) as f32;
                }
            }
        }
    }
    (c, counts)
}

/// Each empty cluster takes half of the largest cluster: both centroids move apart by a small
/// perturbation along every coordinate (as faiss does), so the next assignment splits it.
fn repair_empty(c: &mut [f32], d: usize, counts: &mut [u64]) -> usize {
    let k = counts.len();
    let mut repaired = 0;
    for ci in 0..k {
        if counts[ci] != 0 {
            continue;
        }
        let big = (0..k).max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a))).unwrap_or(0);
        if counts[big] < 2 {
            break;
        }
        let scale = (c[big * d..(big + 1) * d].iter().map(|v| v * v).sum::<f32>() / d.max(1) as f32).sqrt().max(1e-12);
        for j in 0..d {
            let v = c[big * d + j];
            let delta = SPLIT_EPS * (v.abs() + scale);
            let s = if j % 2 == 0 { 1.0 } else { -1.0 };
            c[ci * d + j] = v + s * delta;
            c[big * d + j] = v - s * delta;
        }
        counts[ci] = counts[big] / 2;
        counts[big] -= counts[ci];
        repaired += 1;
    }
    repaired
}

/// k-means++ seeding on a sample of at most `sample` rows.
fn seed_plus_plus(data: &[f32], d: usize, k: usize, sample: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = data.len() / d;
    let m = n.min(sample.max(k));
    let mut rows = rand::seq::index::sample(rng, n, m).into_vec();
    rows.sort_unstable();
    let pts: Vec<f32> = rows.iter().flat_map(|&r| data[r * d..(r + 1) * d].iter().copied()).collect();
    let mut c = Vec::with_capacity(k * d);
    let first = rng.random_range(0..m);
    c.extend_from_slice(&pts[first * d..(first + 1) * d]);
    let sq = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let mut d2: Vec<f32> = pts.par_chunks(d).map(|p| sq(p, &c[..d])).collect();
    for _ in 1..k {
        let total: f64 = d2.iter().map(|&v| v as f64).sum();
        let pick = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            let mut pick = m - 1;
            for (i, &v) in d2.iter().enumerate() {
                acc += v as f64;
                if acc > target && v > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.random_range(0..m)
        };
        let new = pts[pick * d..(pick + 1) * d].to_vec();
        d2.par_iter_mut().zip(pts.par_chunks(d)).for_each(|(v, p)| *v = v.min(sq(p, &new)));
        c.extend_from_slice(&new);
    }
    c
}

pub(crate) struct Params {
    pub k: usize,
    pub iters: usize,
    pub balanced: bool,
    pub seed: u64,
    pub init_sample: usize,
}

/// Train one level; the returned assignment uses the final centroids (nearest centre).
pub(crate) fn train_level(data: &[f32], d: usize, p: &Params) -> Level {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut c = seed_plus_plus(data, d, p.k, p.init_sample, &mut rng);
    for _ in 0..p.iters {
        let packed = Packed::new(&c, p.k, d);
        let assign = if p.balanced { balanced(data, d, &packed) } else { nearest(data, d, &packed).0 };
        let (mut nc, mut counts) = update(data, d, p.k, &assign, &c);
        repair_empty(&mut nc, d, &mut counts);
        c = nc;
    }
    let (assign, _) = nearest(data, d, &Packed::new(&c, p.k, d));
    let mut counts = vec![0u64; p.k];
    for &a in &assign {
        counts[a as usize] += 1;
    }
    Level { centroids: c, assign, counts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_fills_empty_clusters() {
        let d = 2;
        let mut c = vec![1.0, 1.0, 0.0, 0.0, 5.0, 5.0];
        let mut counts = vec![10, 0, 3];
        assert_eq!(repair_empty(&mut c, d, &mut counts), 1);
        assert_eq!(counts, vec![5, 5, 3]);
        assert_ne!(c[0..2], c[2..4]);
        assert!((c[0] - 1.0).abs() < 0.01 && (c[2] - 1.0).abs() < 0.01);
    }

    #[test]
    fn balanced_respects_capacity() {
        // 40 points all near one centre; 4 centres: each gets exactly 10.
        let d = 2;
        let data: Vec<f32> = (0..40).flat_map(|i| [i as f32 * 0.01, 0.0]).collect();
        let c = vec![0.0, 0.0, 10.0, 0.0, 0.0, 10.0, -10.0, 0.0];
        let a = balanced(&data, d, &Packed::new(&c, 4, d));
        let mut counts = [0; 4];
        for x in a {
            counts[x as usize] += 1;
        }
        assert_eq!(counts, [10; 4]);
    }
}
