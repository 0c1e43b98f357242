//! Devices and dynamic batching. This machine has no GPU: `Auto` falling back to CPU and `Cuda`
//! failing with the reason are tested; the CUDA path itself is not.

mod common;

use std::time::Duration;

use medley_models::{Batcher, Device, ImageEncoder, ModelHome, Runtime};

#[test]
fn auto_falls_back_to_cpu_and_cuda_says_why() {
    let home = ModelHome::from_env();
    let rt = Runtime::with_device(&home, Device::Auto).unwrap();
    if rt.device() == Device::Cpu {
        let why = rt.fallback_reason().expect("a reason");
        assert!(why.contains("CUDA"), "{why}");
        match Runtime::with_device(&home, Device::Cuda) {
            Err(e) => assert!(e.to_string().contains("CUDA"), "{e}"),
            Ok(_) => panic!("cuda without a CUDA provider must fail"),
        }
    }
    // Sessions work on the chosen device.
    let enc = ImageEncoder::efficientnet_lite0(&rt, &home).unwrap();
    assert_eq!(enc.encode(&[&vec![128u8; 224 * 224 * 3]]).unwrap()[0].embedding.len(), 1280);
    assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda);
    assert!("tpu".parse::<Device>().is_err());
}

#[test]
fn batcher_gathers_requests_from_many_threads() {
    let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let batcher = Batcher::new(8, Duration::from_millis(50), move |xs: Vec<u32>| {
        seen.lock().unwrap().push(xs.len());
        Ok(xs.into_iter().map(|x| x * 2).collect())
    })
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let b = batcher.clone();
            s.spawn(move || {
                for i in 0..10u32 {
                    assert_eq!(b.submit(t * 100 + i).unwrap(), (t * 100 + i) * 2);
                }
            });
        }
    });
    let sizes = sizes.lock().unwrap();
    assert_eq!(sizes.iter().sum::<usize>(), 40);
    assert!(sizes.iter().all(|&n| n <= 8));
    assert!(sizes.iter().any(|&n| n > 1), "requests were batched: {sizes:?}");
}

#[test]
fn batcher_merges_concurrent_submissions_of_many() {
    // Without a wait: a batch takes what is queued, so callers that arrive while one batch
    // runs are merged into the next.
    let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let batcher = Batcher::new(64, Duration::ZERO, move |xs: Vec<u32>| {
        seen.lock().unwrap().push(xs.len());
        std::thread::sleep(Duration::from_millis(20));
        Ok(xs.into_iter().map(|x| x + 1).collect())
    })
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let b = batcher.clone();
            s.spawn(move || {
                for round in 0..5u32 {
                    let xs: Vec<u32> = (0..6).map(|i| t * 1000 + round * 10 + i).collect();
                    let want: Vec<u32> = xs.iter().map(|x| x + 1).collect();
                    assert_eq!(b.submit_many(xs).unwrap(), want, "outputs in order");
                }
            });
        }
    });
    let sizes = sizes.lock().unwrap();
    assert_eq!(sizes.iter().sum::<usize>(), 4 * 5 * 6);
    assert!(sizes.iter().any(|&n| n > 6), "submissions of different callers were merged: {sizes:?}");
}

#[test]
fn batcher_shares_one_model_session() {
    let (rt, home) = common::runtime();
    let enc = std::sync::Arc::new(ImageEncoder::efficientnet_lite0(rt, &home).unwrap());
    let e = enc.clone();
    let batcher = Batcher::new(4, Duration::from_millis(20), move |imgs: Vec<Vec<u8>>| {
        let refs: Vec<&[u8]> = imgs.iter().map(Vec::as_slice).collect();
        Ok(e.encode(&refs)?.into_iter().map(|o| o.embedding).collect())
    })
    .unwrap();
    let img: Vec<u8> = (0..224 * 224 * 3).map(|i| (i % 251) as u8).collect();
    let direct = enc.encode(&[&img]).unwrap().remove(0).embedding;
    std::thread::scope(|s| {
        for _ in 0..3 {
            let b = batcher.clone();
            let img = img.clone();
            let direct = direct.clone();
            s.spawn(move || assert!(common::max_diff(&b.submit(img).unwrap(), &direct) < 1e-4));
        }
    });
    // Errors reach the caller.
    assert!(batcher.submit(vec![0u8; 3]).is_err());
}

/// The fp16 variant the manifest offers for efficientnet-lite0 (loaded on CUDA) gives the
/// float32 graph's embeddings and logits on the golden input (CPU runs float16 graphs too).
#[test]
fn fp16_variant_matches_float32() {
    let (rt, home) = common::runtime();
    let spec = medley_models::ModelSpec::load(&home, "efficientnet-lite0").unwrap();
    let fp16 = spec.graphs[0].fp16.as_deref().expect("the manifest offers fp16 for efficientnet-lite0");
    let dir = home.model_dir("efficientnet-lite0").unwrap();
    let golden = common::Case::load(&dir, Some("random_pixels"));
    let (x, shape) = golden.f32s("inputs", "pixel_values");
    let x = medley_models::Array::F32(shape, x);
    let run = |file: &str| {
        let graph = medley_models::Graph::open(rt, "efficientnet-lite0", &dir.join(file)).unwrap();
        graph.run(&[("pixel_values", &x)], &["embedding", "logits"]).unwrap()
    };
    let (a, b) = (run("model.onnx"), run(fp16));
    for name in ["embedding", "logits"] {
        let (a, b) = (a[name].f32s().unwrap(), b[name].f32s().unwrap());
        let width = a.len() / 2;
        for (ra, rb) in a.chunks(width).zip(b.chunks(width)) {
            let cos = medley_models::cosine(ra, rb);
            assert!(cos > 0.999, "{name}: cosine {cos} between fp16 and fp32");
        }
    }
}
