//! Arbitrary bytes through probe and decode (all samplers by the first byte): no panic, no
//! hang (a 5 s budget per input), no memory error. Corpus: the fixtures (see README.md).
#![no_main]

use std::io::Write;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use medley_media::{DecodeOptions, Sampler, decode, probe};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    // probe/decode take a path: one temporary file per process, rewritten per input.
    thread_local! {
        static FILE: tempfile_path::Path = tempfile_path::Path::new();
    }
    FILE.with(|f| {
        let mut file = std::fs::File::create(&f.0).expect("temp file");
        file.write_all(bytes).expect("write");
        drop(file);
        let Ok(p) = probe(&f.0) else { return };
        let sampler = match selector % 4 {
            0 => Sampler::Fps(1.0),
            1 => Sampler::Uniform(3),
            2 => Sampler::Keyframes,
            _ => Sampler::Shots(Default::default()),
        };
        let opts = DecodeOptions {
            sampler: Some(sampler),
            frame_size: Some(32),
            audio_rate: (selector & 4 == 0).then_some(8000),
            threads: 1,
            time_budget: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let _ = decode(&p, &opts, &mut |f| assert_eq!(f.rgb.len(), 32 * 32 * 3), &mut |s| assert!(s.iter().all(|x| x.is_finite())));
    });
});

mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Path {
        pub fn new() -> Self {
            Self(std::env::temp_dir().join(format!("medley-fuzz-{}.bin", std::process::id())))
        }
    }
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
