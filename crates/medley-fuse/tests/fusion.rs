//! Fusion, PCA and the YouTube-8M form.

use medley_fuse::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller.
    let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt()
}

fn spec() -> FusionSpec {
    FusionSpec::new([("visual", 6, 1.0), ("audio", 4, 0.5), ("bridge", 3, 0.25)])
}

#[test]
fn missing_modalities_still_give_unit_vectors() {
    let s = spec();
    let v = [3.0f32, 0.0, 4.0, 0.0, 0.0, 0.0];
    let a = [1.0f32, 1.0, 1.0, 1.0];
    let b = [0.0f32, 2.0, 0.0];
    for blocks in [
        vec![Some(&v[..]), Some(&a[..]), Some(&b[..])],
        vec![Some(&v[..]), None, None],
        vec![None, Some(&a[..]), None],
        vec![None, None, Some(&b[..])],
        vec![Some(&v[..]), Some(&[0.0f32; 4][..]), None],
    ] {
        let x = s.concat(&blocks).unwrap();
        assert_eq!(x.len(), 13);
        assert!(x.iter().all(|v| v.is_finite()));
        assert!((norm(&x) - 1.0).abs() < 1e-6, "{blocks:?}: {}", norm(&x));
    }
    // All present: each block keeps its weight's share (weights 1, 0.5, 0.25).
    let x = s.concat(&[Some(&v), Some(&a), Some(&b)]).unwrap();
    let w = (1.0f64 + 0.25 + 0.0625).sqrt();
    assert!((norm(&x[..6]) - 1.0 / w).abs() < 1e-6 && (norm(&x[6..10]) - 0.5 / w).abs() < 1e-6);
    // Visual only: the visual block is the whole vector, the rest zero.
    let x = s.concat(&[Some(&v), None, None]).unwrap();
    assert_eq!(&x[..3], &[0.6, 0.0, 0.8]);
    assert!(x[6..].iter().all(|&v| v == 0.0));
    assert!(matches!(s.concat(&[None, None, None]), Err(Error::NoModality)));
    assert!(s.concat(&[Some(&a), None, None]).is_err());
}

/// Data with covariance diag(9, 4, 1, 0.25, ...) in a known rotated basis.
fn known_covariance(n: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Top direction: a fixed unit vector; the others: whatever completes it (Householder).
    let u: Vec<f64> = (0..d).map(|i| (i as f64 + 1.0).sqrt()).collect();
    let un = u.iter().map(|x| x * x).sum::<f64>().sqrt();
    let u: Vec<f64> = u.iter().map(|x| x / un).collect();
    // H = I - 2 w w^T with w = (e1 - u)/|e1 - u| maps e1 to u.
    let mut w: Vec<f64> = u.iter().map(|x| -x).collect();
    w[0] += 1.0;
    let wn = w.iter().map(|x| x * x).sum::<f64>().sqrt();
    w.iter_mut().for_each(|x| *x /= wn);
    let sd: Vec<f64> = (0..d).map(|i| 3.0 / 2f64.powi(i as i32)).collect();
    let mut data = Vec::with_capacity(n * d);
    for _ in 0..n {
        let z: Vec<f64> = sd.iter().map(|s| s * gauss(&mut rng)).collect();
        let wz: f64 = w.iter().zip(&z).map(|(a, b)| a * b).sum();
        data.extend(z.iter().zip(&w).enumerate().map(|(i, (zi, wi))| (zi - 2.0 * wz * wi + i as f64) as f32));
    }
    (data, u)
}

#[test]
fn pca_recovers_the_top_direction() {
    let (d, n) = (8, 20_000);
    let (data, u) = known_covariance(n, d, 1);
    let p = Pca::fit(&data, d, 3, false).unwrap();
    let top: f64 = p.components[..d].iter().zip(&u).map(|(&a, b)| a as f64 * b).sum();
    assert!(top.abs() > 0.999, "cos to the known top direction {top}");
    assert!((p.variances[0] - 9.0).abs() < 0.3 && (p.variances[1] - 2.25).abs() < 0.1, "{:?}", p.variances);
    assert!((p.mean[3] - 3.0).abs() < 0.1);
    assert!(p.explained > 0.98 && p.explained < 1.0);
    // Components are orthonormal.
    for i in 0..3 {
        for j in 0..3 {
            let dot: f32 = p.components[i * d..(i + 1) * d]
                .iter()
                .zip(&p.components[j * d..(j + 1) * d])
                .map(|(a, b)| a * b)
                .sum();
            assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5);
        }
    }
    // Fewer rows than dimensions (the Gram path) finds the same top direction.
    let p2 = Pca::fit(&data[..6 * d], d, 2, false).unwrap();
    assert_eq!(p2.components.len(), 2 * d);
}

#[test]
fn whitening_gives_unit_variance_and_quantises() {
    let (d, n) = (8, 20_000);
    let (data, _) = known_covariance(n, d, 2);
    let p = Pca::fit(&data, d, 4, true).unwrap();
    let ys: Vec<Vec<f32>> = data.chunks(d).map(|x| p.apply(x).unwrap()).collect();
    for c in 0..4 {
        let mean = ys.iter().map(|y| y[c] as f64).sum::<f64>() / n as f64;
        let var = ys.iter().map(|y| (y[c] as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(mean.abs() < 1e-3 && (var - 1.0).abs() < 1e-3, "component {c}: mean {mean}, var {var}");
    }
    // 8-bit: the error of a round trip is at most half a bin inside [-2, 2]; values outside clip.
    let x = [-3.0f32, -2.0, -0.5, 0.0, 0.3, 1.99, 2.0, 7.0];
    let q = quantize_yt8m(&x);
    assert_eq!(q[0], 0);
    assert_eq!(q[7], 255);
    let back = dequantize_yt8m(&q);
    for (a, b) in x.iter().zip(&back) {
        assert!((a.clamp(-2.0, 2.0) - b).abs() <= 4.0 / 255.0, "{a} -> {b}");
    }
}

#[test]
fn fitted_fusion_is_versioned_and_serialisable() {
    let s = spec();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let rows: Vec<Vec<Vec<f32>>> = (0..300)
        .map(|_| [6, 4, 3].iter().map(|&k| (0..k).map(|_| rng.random_range(-1.0..1.0f32)).collect()).collect())
        .collect();
    let items: Vec<Vec<Option<&[f32]>>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| r.iter().enumerate().map(|(m, b)| (i % 3 != m || i % 2 == 0).then_some(&b[..])).collect())
        .collect();
    let f = Fusion::fit(s.clone(), &items, 5, ContentForm::Unit).unwrap();
    assert_eq!(f.dim(), 5);
    for it in &items {
        let c = f.content(it).unwrap();
        assert!(c.iter().all(|v| v.is_finite()) && (norm(&c) - 1.0).abs() < 1e-5);
    }
    let only_audio = f.content(&[None, Some(&rows[0][1]), None]).unwrap();
    assert!((norm(&only_audio) - 1.0).abs() < 1e-5);
    let back = Fusion::from_json(&f.to_json().unwrap()).unwrap();
    assert_eq!(back, f);
    let g = Fusion::fit(s.clone(), &items, 4, ContentForm::Unit).unwrap();
    assert_ne!(g.version, f.version);
    let y = Fusion::fit(s, &items, 5, ContentForm::Yt8m).unwrap();
    assert_ne!(y.version, f.version);
    assert!(y.pca.as_ref().unwrap().whiten);
}
