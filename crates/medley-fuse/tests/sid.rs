//! Semantic IDs on synthetic clustered data with known structure.

use std::collections::{HashMap, HashSet};

use medley_fuse::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `clusters` well-separated Gaussian blobs in `d` dimensions, `per` points each, shuffled.
/// Returns the vectors and each point's true cluster.
fn blobs(clusters: usize, per: usize, d: usize, spread: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters * d).map(|_| rng.random_range(-10.0..10.0f32)).collect();
    let mut order: Vec<usize> = (0..clusters * per).map(|i| i % clusters).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut data = Vec::with_capacity(order.len() * d);
    for &c in &order {
        for j in 0..d {
            // Sum of uniforms: roughly Gaussian, no extra dependency.
            let g: f32 = (0..4).map(|_| rng.random_range(-1.0..1.0f32)).sum::<f32>() * 0.5;
            data.push(centres[c * d + j] + spread * g);
        }
    }
    (data, order)
}

fn config(levels: usize, codes: usize, seed: u64) -> TrainConfig {
    TrainConfig { seed, iters: 15, ..TrainConfig::new(levels, codes) }
}

/// Share of points whose code is the majority code of their true cluster, and vice versa.
fn purity(truth: &[usize], codes: &Codes, level: usize) -> (f64, f64) {
    let mut by_truth: HashMap<usize, HashMap<u16, usize>> = HashMap::new();
    let mut by_code: HashMap<u16, HashMap<usize, usize>> = HashMap::new();
    for (i, &t) in truth.iter().enumerate() {
        let c = codes.get(i)[level];
        *by_truth.entry(t).or_default().entry(c).or_default() += 1;
        *by_code.entry(c).or_default().entry(t).or_default() += 1;
    }
    let n = truth.len() as f64;
    let a = by_truth.values().map(|m| *m.values().max().unwrap()).sum::<usize>() as f64 / n;
    let b = by_code.values().map(|m| *m.values().max().unwrap()).sum::<usize>() as f64 / n;
    (a, b)
}

#[test]
fn first_level_recovers_the_clusters() {
    let (data, truth) = blobs(16, 200, 24, 1.0, 7);
    let cb = train(&data, 24, &config(3, 16, 1)).unwrap();
    let codes = cb.assign(&data).unwrap();
    let (complete, pure) = purity(&truth, &codes, 0);
    assert!(complete >= 0.95 && pure >= 0.95, "completeness {complete}, purity {pure}");
    // Deeper levels keep lowering the error.
    let r = &cb.report.levels;
    assert!(r[0].relative_mse < 0.05, "{r:?}");
    assert!(r[1].relative_mse < r[0].relative_mse && r[2].relative_mse < r[1].relative_mse, "{r:?}");
    assert_eq!(r[0].used, 16);
    // The report's error is the error of the assignment.
    let rel = cb.relative_mse(&data, &codes).unwrap();
    assert!((rel - r[2].relative_mse).abs() < 1e-6, "{rel} vs {}", r[2].relative_mse);
}

#[test]
fn balanced_training_spreads_codes() {
    // Two huge blobs and K = 8: plain k-means may leave codes tiny; balanced fills all evenly.
    let (data, _) = blobs(2, 400, 8, 1.0, 9);
    let cfg = TrainConfig { balanced: true, ..config(1, 8, 2) };
    let cb = train(&data, 8, &cfg).unwrap();
    let r = &cb.report.levels[0];
    assert_eq!(r.used, 8);
    assert!(r.perplexity > 7.0, "{r:?}");
}

#[test]
fn same_seed_same_codebook_bit_for_bit() {
    let (data, _) = blobs(10, 150, 16, 2.0, 3);
    let a = train(&data, 16, &config(3, 32, 42)).unwrap();
    let b = train(&data, 16, &config(3, 32, 42)).unwrap();
    assert_eq!(a.version, b.version);
    let bits = |cb: &Codebook| cb.centroids.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    // With one thread too (the reductions do not depend on the thread count).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let c = pool.install(|| train(&data, 16, &config(3, 32, 42))).unwrap();
    assert_eq!(bits(&a), bits(&c));
    // Another seed gives another codebook (the check can fail).
    let d = train(&data, 16, &config(3, 32, 43)).unwrap();
    assert_ne!(a.version, d.version);
    // JSON round trip is exact and checked.
    let back = Codebook::from_json(&a.to_json().unwrap()).unwrap();
    assert_eq!(back, a);
    let tampered = a.to_json().unwrap().replacen("\"centroids\":[[", "\"centroids\":[[1.5,", 1);
    assert!(Codebook::from_json(&tampered).is_err());
}

#[test]
fn ids_are_unique_and_stable() {
    let (data, _) = blobs(8, 300, 16, 1.5, 5);
    let cb = train(&data, 16, &config(2, 4, 11)).unwrap();
    let codes = cb.assign(&data).unwrap();
    let extra = unique_suffixes(&codes);
    // 2 levels of 4 codes for 2400 items: collisions are certain, the extra code resolves them.
    assert!(extra.iter().any(|&e| e > 0));
    let ids: HashSet<String> = codes.iter().zip(&extra).map(|(c, &e)| sid_string(c, e)).collect();
    assert_eq!(ids.len(), codes.len());
    // Extra codes count earlier items with the same codes: 0, 1, 2, ... per prefix.
    let mut per: HashMap<&[u16], Vec<u32>> = HashMap::new();
    for (c, &e) in codes.iter().zip(&extra) {
        per.entry(c).or_default().push(e);
    }
    for v in per.values() {
        assert_eq!(*v, (0..v.len() as u32).collect::<Vec<_>>());
    }
    // An item assigned again, alone or in another batch, gets the same codes.
    for i in [0, 1, 7, 1000, 2399] {
        let again = cb.assign(&data[i * 16..(i + 1) * 16]).unwrap();
        assert_eq!(again.get(0), codes.get(i), "item {i}");
    }
    let tail = cb.assign(&data[5 * 16..]).unwrap();
    assert_eq!(tail.data, codes.data[5 * 2..]);
    // Incremental suffixes continue after the stored ones.
    let mut counter = SuffixCounter::default();
    for (c, &e) in codes.iter().zip(&extra) {
        counter.observe(c, e);
    }
    let c0 = codes.get(0);
    assert_eq!(counter.next(c0), per[c0].len() as u32);
    // Readable strings parse back.
    assert_eq!(sid_string(&[12, 7, 201], 0), "12-7-201-0");
    assert_eq!(parse_sid("12-7-201-3").unwrap(), (vec![12, 7, 201], 3));
    assert!(parse_sid("12-x-1").is_err());
}

#[test]
fn stats_report_the_structure() {
    let (data, _) = blobs(8, 100, 12, 1.0, 21);
    let cb = train(&data, 12, &config(3, 8, 4)).unwrap();
    let codes = cb.assign(&data).unwrap();
    let extra = unique_suffixes(&codes);
    let s = sid_stats(&cb, &data, &codes, &extra, 200, 1).unwrap();
    assert_eq!(s.n, 800);
    assert_eq!(s.unique_share, 1.0);
    assert_eq!(s.levels[0].used, 8);
    assert!((s.collision_rate - (1.0 - s.distinct_codes as f64 / 800.0)).abs() < 1e-12);
    // Nearest neighbours within tight blobs share the first code almost always.
    assert!(s.nn_prefix_share[0] > 0.95, "{s}");
    assert!(s.nn_prefix_share[0] >= s.nn_prefix_share[1] && s.nn_prefix_share[1] >= s.nn_prefix_share[2]);
    assert!(s.to_string().contains("relative MSE"));
    // Wrong extra codes show up as duplicates.
    let s2 = sid_stats(&cb, &data, &codes, &vec![0; 800], 0, 1).unwrap();
    assert!(s2.unique_share < 1.0);
}

#[test]
fn prefix_ngrams_and_unigram_pieces() {
    assert_eq!(prefix_ngrams(&[12, 7, 201]), vec!["l1:12", "l1l2:12-7", "l1l2l3:12-7-201"]);
    let (data, _) = blobs(8, 200, 12, 1.0, 8);
    let cb = train(&data, 12, &config(3, 8, 4)).unwrap();
    let codes = cb.assign(&data).unwrap();
    let m = SidPieceModel::train(codes.iter(), 3, 8, 100).unwrap();
    assert!(m.vocab_size() >= 24, "{}", m.vocab_size());
    let m = SidPieceModel::from_json(&m.to_json().unwrap()).unwrap();
    let mut multi = 0;
    for c in codes.iter().take(200) {
        let p = m.pieces(c).unwrap();
        // The pieces spell the ID back, in order.
        let spelled: Vec<u16> = p
            .iter()
            .flat_map(|s| {
                s.split_once(':').unwrap().1.split('-').map(|x| x.parse::<u16>().unwrap()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(spelled, c, "{p:?}");
        assert!(p[0].starts_with("l1:"));
        multi += p.iter().any(|s| s.contains('-')) as usize;
    }
    // Frequent code pairs become pieces of their own.
    assert!(multi > 0);
}
