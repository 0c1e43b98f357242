//! An in-memory inverted-file (IVF) index over vectors, searched by inner product (cosine
//! similarity for unit vectors) with the k-means kernels: the vectors are split into lists by
//! their nearest k-means centre, and a query scores only the members of its `nprobe` nearest
//! lists. The lists are scanned in int8 ([`Codes`]), and the best candidates of that scan
//! (several times `k`) are scored again exactly, so the answer and its scores are those of an
//! exact search over the probed lists, unless int8 rounding (about 1e-3) put a true top-`k`
//! vector below that many others. A small index is one list: every vector is scanned.
//!
//! For a server answering many searches over one column: a search over 100k 384-wide vectors
//! probing 20 of 316 lists reads about 6k vectors (2.4 MB in int8 rather than 9.7 MB in f32).

use std::sync::Arc;

use crate::codes::Codes;
use crate::kernel::Packed;
use crate::kmeans::{Params, nearest, train_level};

/// Up to this many vectors, one list: every search is exact.
const EXACT_UP_TO: usize = 8192;
/// Rows k-means trains the centres on (a sample of the whole, per list).
const TRAIN_ROWS_PER_LIST: usize = 64;
const TRAIN_ITERS: usize = 8;
/// Candidates from the int8 scan scored exactly: this many times `k`, and at least
/// [`MIN_CANDIDATES`]. Int8 scores are within about 1e-3 of the exact ones for unit vectors,
/// so a true top-`k` vector is outranked in the scan only by near-ties.
const CANDIDATES_PER_RESULT: usize = 4;
const MIN_CANDIDATES: usize = 32;

/// Centres that split vectors into lists, trained once and reused as rows change (a later
/// [`Ivf::build`] with these centres only assigns).
#[derive(Clone)]
pub struct IvfCentres {
    d: usize,
    k: usize,
    centres: Vec<f32>,
    /// How many vectors they were trained on, to tell when a grown set wants new ones.
    trained_on: usize,
}

impl IvfCentres {
    /// Lists for `n` vectors of width `d` (`data` row-major): about sqrt(n) of them, so a
    /// list holds about as many vectors as there are lists; one for small sets.
    pub fn train(data: &[f32], d: usize, seed: u64) -> Self {
        let n = data.len().checked_div(d).unwrap_or(0);
        if n <= EXACT_UP_TO || d == 0 {
            return Self { d, k: 1, centres: vec![0.0; d], trained_on: n };
        }
        let k = (n as f64).sqrt().round() as usize;
        // A strided sample, so a table written in order of anything still trains on all of it.
        let rows = (k * TRAIN_ROWS_PER_LIST).min(n);
        let stride = n / rows;
        let sample: Vec<f32> =
            (0..rows).flat_map(|i| data[i * stride * d..(i * stride + 1) * d].iter().copied()).collect();
        let level =
            train_level(&sample, d, &Params { k, iters: TRAIN_ITERS, balanced: false, seed, init_sample: rows });
        Self { d, k, centres: level.centroids, trained_on: n }
    }

    /// Whether a set of `n` vectors has outgrown (or shrunk well below) what these centres
    /// were trained for.
    pub fn fits(&self, n: usize) -> bool {
        let single = self.k == 1;
        if n <= EXACT_UP_TO {
            return single;
        }
        !single && n <= self.trained_on.saturating_mul(2) && n * 2 >= self.trained_on
    }

    pub fn lists(&self) -> usize {
        self.k
    }
}

/// The index: each list's vectors (shared with the index it was updated from while
/// unchanged), with their row numbers.
pub struct Ivf {
    d: usize,
    centres: IvfCentres,
    packed_centres: Arc<Packed>,
    lists: Vec<(Vec<u32>, Arc<Members>)>,
}

/// A list's vectors: in int8 for the scan, and as they are (row-major) for exact scores.
struct Members {
    rows: Vec<f32>,
    codes: Codes,
}

impl Members {
    fn new(rows: Vec<f32>, d: usize) -> Arc<Self> {
        Arc::new(Self { codes: Codes::new(&rows, d), rows })
    }

    fn row(&self, at: usize, d: usize) -> &[f32] {
        &self.rows[at * d..(at + 1) * d]
    }
}

impl Ivf {
    /// Memory an index of `n` vectors of width `d` keeps for its lists: f32 for exact scores,
    /// and the int8 scan copy.
    pub const fn bytes_for(n: usize, d: usize) -> usize {
        n * (d * std::mem::size_of::<f32>() + Codes::bytes_per_vector(d))
    }

    /// Index the `n x d` rows of `data` under `centres` (trained on these rows or on an
    /// earlier version of them).
    pub fn build(data: &[f32], centres: IvfCentres) -> Self {
        let d = centres.d;
        let packed_centres = Arc::new(Packed::new(&centres.centres, centres.k, d));
        let assign = if centres.k == 1 {
            vec![0; data.len().checked_div(d).unwrap_or(0)]
        } else {
            nearest(data, d, &packed_centres).0
        };
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); centres.k];
        for (row, &list) in assign.iter().enumerate() {
            members[list as usize].push(row as u32);
        }
        let lists = members
            .into_iter()
            .map(|ids| {
                let rows: Vec<f32> =
                    ids.iter().flat_map(|&r| data[r as usize * d..(r as usize + 1) * d].iter().copied()).collect();
                (ids, Members::new(rows, d))
            })
            .collect();
        Self { d, centres, packed_centres, lists }
    }

    /// This index after rows changed, under the same centres: row `r` of this index is row
    /// `renumber[r]` of the new one or gone (`None`), and the `n x d` rows of `added` follow as
    /// rows `first_added..`. Only the lists that lose or gain rows are packed again; the rest
    /// are shared.
    pub fn update(&self, renumber: &[Option<u32>], added: &[f32], first_added: u32) -> Self {
        let d = self.d;
        let n_added = added.len().checked_div(d).unwrap_or(0);
        let assign = match (self.centres.k, n_added) {
            (_, 0) => Vec::new(),
            (1, _) => vec![0; n_added],
            _ => nearest(added, d, &self.packed_centres).0,
        };
        let mut gained: Vec<Vec<u32>> = vec![Vec::new(); self.lists.len()];
        for (i, &list) in assign.iter().enumerate() {
            gained[list as usize].push(i as u32);
        }
        let lists = self
            .lists
            .iter()
            .zip(gained)
            .map(|((ids, packed), gained)| {
                let kept: Vec<(usize, u32)> =
                    ids.iter().enumerate().filter_map(|(at, &r)| renumber[r as usize].map(|new| (at, new))).collect();
                let mut new_ids: Vec<u32> = kept.iter().map(|&(_, new)| new).collect();
                if kept.len() == ids.len() && gained.is_empty() {
                    return (new_ids, packed.clone());
                }
                let mut rows = Vec::with_capacity((kept.len() + gained.len()) * d);
                for &(at, _) in &kept {
                    rows.extend_from_slice(packed.row(at, d));
                }
                for &i in &gained {
                    rows.extend_from_slice(&added[i as usize * d..(i as usize + 1) * d]);
                    new_ids.push(first_added + i);
                }
                (new_ids, Members::new(rows, d))
            })
            .collect();
        Self { d, centres: self.centres.clone(), packed_centres: Arc::clone(&self.packed_centres), lists }
    }

    /// Rows in the index.
    pub fn len(&self) -> usize {
        self.lists.iter().map(|(ids, _)| ids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn centres(&self) -> &IvfCentres {
        &self.centres
    }

    /// The `k` rows with the largest inner product with `query`, best first, looking in the
    /// `nprobe` lists whose centres are nearest the query.
    pub fn search(&self, query: &[f32], k: usize, nprobe: usize) -> Vec<(u32, f32)> {
        if query.len() != self.d || k == 0 {
            return Vec::new();
        }
        let nlists = self.lists.len();
        let probe: Vec<usize> = if nlists <= nprobe {
            (0..nlists).collect()
        } else {
            let mut dots = vec![0f32; self.packed_centres.kpad()];
            self.packed_centres.dots(query, 1, &mut dots);
            // Nearest by L2 for a unit query: smallest |c|^2 - 2 q.c.
            let mut order: Vec<(f32, usize)> =
                (0..nlists).map(|j| (self.packed_centres.norms[j] - 2.0 * dots[j], j)).collect();
            order.select_nth_unstable_by(nprobe - 1, |a, b| a.0.total_cmp(&b.0));
            order[..nprobe].iter().map(|&(_, j)| j).collect()
        };
        // The int8 scan: (list, position in it, approximate score) of the best candidates.
        let want = (k * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES);
        let mut candidates: Vec<(u32, u32, f32)> = Vec::with_capacity(want * 2);
        let mut floor = f32::NEG_INFINITY;
        let mut scores = Vec::new();
        for j in probe {
            let (ids, members) = &self.lists[j];
            if ids.is_empty() {
                continue;
            }
            members.codes.scores(query, &mut scores);
            for (at, &score) in scores.iter().enumerate() {
                if score > floor || candidates.len() < want {
                    candidates.push((j as u32, at as u32, score));
                    if candidates.len() >= want * 2 {
                        candidates.select_nth_unstable_by(want - 1, |a, b| b.2.total_cmp(&a.2));
                        candidates.truncate(want);
                        floor = candidates.iter().map(|c| c.2).fold(f32::INFINITY, f32::min);
                    }
                }
            }
        }
        // Exact scores for them, summed in one order whatever the list.
        let mut best: Vec<(u32, f32)> = candidates
            .into_iter()
            .map(|(j, at, _)| {
                let (ids, members) = &self.lists[j as usize];
                let row = members.row(at as usize, self.d);
                (ids[at as usize], row.iter().zip(query).map(|(a, b)| a * b).sum())
            })
            .collect();
        keep_best(&mut best, k);
        best
    }
}

/// Sort best first (ties by row, so the order is stable) and keep `k`.
fn keep_best(v: &mut Vec<(u32, f32)>, k: usize) {
    v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` unit vectors around 50 random directions (as embeddings of a catalogue cluster).
    fn clustered(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dirs: Vec<Vec<f32>> = (0..50).map(|_| (0..d).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
        (0..n)
            .flat_map(|i| {
                let dir = &dirs[i % dirs.len()];
                let mut v: Vec<f32> = dir.iter().map(|x| x + rng.random_range(-0.6..0.6)).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect()
    }

    fn exact(data: &[f32], d: usize, q: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = data
            .chunks_exact(d)
            .enumerate()
            .map(|(i, r)| (i as u32, r.iter().zip(q).map(|(a, b)| a * b).sum()))
            .collect();
        keep_best(&mut all, k);
        all
    }

    #[test]
    fn a_small_set_is_searched_exactly() {
        let d = 32;
        let data = clustered(3000, d, 1);
        let ivf = Ivf::build(&data, IvfCentres::train(&data, d, 7));
        assert_eq!(ivf.centres().lists(), 1);
        for q in data.chunks_exact(d).step_by(97) {
            let got = ivf.search(q, 10, 1);
            let want = exact(&data, d, q, 10);
            assert_eq!(got.iter().map(|h| h.0).collect::<Vec<_>>(), want.iter().map(|h| h.0).collect::<Vec<_>>());
            assert!((got[0].1 - 1.0).abs() < 1e-4, "a vector's best match is itself");
        }
    }

    #[test]
    fn a_large_set_keeps_recall_with_a_few_lists_probed() {
        let d = 48;
        let data = clustered(20_000, d, 2);
        let ivf = Ivf::build(&data, IvfCentres::train(&data, d, 7));
        assert_eq!(ivf.centres().lists(), 141);
        let (mut found, mut total) = (0, 0);
        for q in data.chunks_exact(d).step_by(499) {
            let got: Vec<u32> = ivf.search(q, 10, 20).iter().map(|h| h.0).collect();
            let want = exact(&data, d, q, 10);
            found += want.iter().filter(|w| got.contains(&w.0)).count();
            total += want.len();
            // Scores are the exact inner products, best first.
            let scores: Vec<f32> = ivf.search(q, 10, 20).iter().map(|h| h.1).collect();
            assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        }
        let recall = found as f64 / total as f64;
        assert!(recall >= 0.9, "recall@10 {recall:.3}");
        // Probing every list is exact.
        let q = &data[..d];
        let ids = |v: Vec<(u32, f32)>| v.into_iter().map(|h| h.0).collect::<Vec<_>>();
        assert_eq!(ids(ivf.search(q, 10, 141)), ids(exact(&data, d, q, 10)));
    }

    #[test]
    fn centres_are_reused_until_the_set_doubles() {
        let d = 16;
        let data = clustered(10_000, d, 3);
        let centres = IvfCentres::train(&data, d, 7);
        assert!(centres.fits(10_000) && centres.fits(19_000) && centres.fits(9_000));
        assert!(!centres.fits(21_000), "grown past twice the training set");
        assert!(!centres.fits(100), "small enough for one exact list");
        let grown = clustered(12_000, d, 4);
        let ivf = Ivf::build(&grown, centres);
        assert_eq!(ivf.search(&grown[5 * d..6 * d], 1, 200)[0].0, 5);
    }

    #[test]
    fn an_update_drops_renumbers_and_adds_rows_as_a_rebuild_would() {
        let d = 24;
        let data = clustered(12_000, d, 5);
        let ivf = Ivf::build(&data, IvfCentres::train(&data, d, 7));
        // Drop every third row, keep the rest in order, add 500 new ones.
        let renumber: Vec<Option<u32>> = {
            let mut next = 0u32;
            (0..12_000)
                .map(|r| {
                    (r % 3 != 0).then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        };
        let kept: Vec<f32> =
            (0..12_000).filter(|r| r % 3 != 0).flat_map(|r| data[r * d..(r + 1) * d].iter().copied()).collect();
        let added = clustered(500, d, 6);
        let first_added = (kept.len() / d) as u32;
        let updated = ivf.update(&renumber, &added, first_added);
        assert_eq!(updated.len(), 8_000 + 500);
        let all: Vec<f32> = kept.iter().chain(&added).copied().collect();
        let rebuilt = Ivf::build(&all, ivf.centres().clone());
        let lists = ivf.centres().lists();
        for q in all.chunks_exact(d).step_by(211) {
            let ids = |v: Vec<(u32, f32)>| v.into_iter().map(|h| h.0).collect::<Vec<_>>();
            assert_eq!(ids(updated.search(q, 10, 20)), ids(rebuilt.search(q, 10, 20)));
            assert_eq!(ids(updated.search(q, 10, lists)), ids(exact(&all, d, q, 10)));
        }
        // A dropped row is not found; an added one is, under its new number.
        let dropped = &data[3 * d..4 * d];
        assert!(updated.search(dropped, 1, lists)[0].1 < 0.9999);
        assert_eq!(updated.search(&added[7 * d..8 * d], 1, lists)[0].0, first_added + 7);
    }
}
