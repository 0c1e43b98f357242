//! Whole pictures beside the square frames (`DecodeOptions::full_frame_side`, for reading
//! on-screen text): upright, in display aspect, never upscaled, the same picture as the square
//! crop at its centre; for videos and still images alike. Needs `MEDLEY_TEST_FIXTURES` and
//! `MEDLEY_TEST_MEDIA` (set by `cargo xtask test`).

use std::path::{Path, PathBuf};

use medley_media::{DecodeOptions, Frame, FullFrame, Sampler, decode, probe};

fn dir(var: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(var).unwrap_or_else(|| panic!("{var} is not set: run `cargo xtask test`")))
}

fn fixture(name: &str) -> PathBuf {
    let path = dir("MEDLEY_TEST_FIXTURES").join(name);
    assert!(path.exists(), "{} missing: run `cargo xtask fixtures`", path.display());
    path
}

fn frames(path: &Path, frame_size: u32, full_frame_side: Option<u32>) -> Vec<Frame> {
    let p = probe(path).unwrap();
    let opts = DecodeOptions {
        sampler: Some(Sampler::Fps(1.0)),
        frame_size: Some(frame_size),
        full_frame_side,
        ..Default::default()
    };
    let mut out = Vec::new();
    decode(&p, &opts, &mut |f| out.push(f), &mut |_| {}).unwrap();
    assert!(!out.is_empty(), "{}: no frames", path.display());
    out
}

fn full(f: &Frame) -> &FullFrame {
    let full = f.full.as_ref().expect("full_frame_side was set: every frame carries its whole picture");
    assert_eq!(full.rgb.len(), (full.width * full.height * 3) as usize);
    full
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| f64::from(x.abs_diff(y))).sum::<f64>() / a.len() as f64
}

#[test]
fn without_the_option_frames_carry_no_whole_picture() {
    let frames = frames(&fixture("matrix/base.mp4"), 64, None);
    assert!(frames.iter().all(|f| f.full.is_none()));
}

#[test]
fn a_16x9_video_gives_16x9_whole_pictures_whose_centre_is_the_square_frame() {
    let path = fixture("matrix/base.mp4");
    // 320x180 whole at its own size; the square crop is its middle 180 columns, also 1:1.
    let frames = frames(&path, 180, Some(320));
    for f in &frames {
        let full = full(f);
        assert_eq!((full.width, full.height), (320, 180));
        let centre: Vec<u8> =
            (0..180).flat_map(|y| full.rgb[(y * 320 + 70) * 3..(y * 320 + 250) * 3].iter().copied()).collect();
        let d = mean_abs_diff(&centre, &f.rgb);
        assert!(d < 3.0, "t={}: centre of the whole picture differs from the square frame by {d:.1}", f.pts_s);
    }
    // The sides are there too: the whole picture is not the crop padded.
    let f = full(&frames[0]);
    let left: Vec<u8> = (0..180).flat_map(|y| f.rgb[y * 320 * 3..(y * 320 + 70) * 3].iter().copied()).collect();
    let spread = left.iter().map(|&v| u32::from(v)).max().unwrap() - left.iter().map(|&v| u32::from(v)).min().unwrap();
    assert!(spread > 40, "the left band is flat ({spread}): is it picture?");
}

#[test]
fn whole_pictures_are_scaled_down_never_up() {
    let path = fixture("matrix/base.mp4");
    for (side, want) in [(160, (160, 90)), (256, (256, 144)), (4000, (320, 180))] {
        for f in frames(&path, 32, Some(side)) {
            assert_eq!((full(&f).width, full(&f).height), want, "side {side}");
        }
    }
}

#[test]
fn rotated_and_anamorphic_videos_give_the_upright_display_picture() {
    let base = frames(&fixture("matrix/base.mp4"), 32, Some(256));
    // Stored turned (180x320) or squeezed (240x180 with 4:3 pixels), displayed as base.
    for name in ["matrix/rot90.mp4", "matrix/rot180.mp4", "matrix/rot270.mp4", "matrix/anamorphic.mp4"] {
        let got = frames(&fixture(name), 32, Some(256));
        assert_eq!(got.len(), base.len(), "{name}");
        for (g, b) in got.iter().zip(&base) {
            let (g, b) = (full(g), full(b));
            assert_eq!((g.width, g.height), (256, 144), "{name}");
            let d = mean_abs_diff(&g.rgb, &b.rgb);
            assert!(d < 8.0, "{name}: differs from the upright reference by {d:.1}");
        }
    }
    // 321x241 with 3856:2889 pixels is 16:9 on screen.
    for f in frames(&fixture("matrix/odd_321x241.mkv"), 32, Some(256)) {
        assert_eq!((full(&f).width, full(&f).height), (256, 144));
    }
}

#[test]
fn still_images_give_their_whole_picture() {
    let photos = dir("MEDLEY_TEST_MEDIA").join("photos");
    // (file, stored size): PNG RGB and JPEG (full-range YUV 4:4:4).
    for (name, w, h) in [("coffee.png", 600u32, 400u32), ("rocket.jpg", 640, 427)] {
        let path = photos.join(name);
        assert!(path.exists(), "{} missing", path.display());
        let got = frames(&path, 64, Some(300));
        assert_eq!(got.len(), 1, "{name}");
        let small = full(&got[0]);
        assert_eq!(small.width, 300, "{name}");
        let want_h = (f64::from(h) * 300.0 / f64::from(w)).round() as u32;
        assert_eq!(small.height, want_h, "{name}");
        // At its own size: whole, and its centre is the square frame.
        let side = w.min(h);
        let same = frames(&path, side, Some(w.max(h)));
        let whole = full(&same[0]);
        assert_eq!((whole.width, whole.height), (w, h), "{name}: never upscaled, never cropped");
        let (x0, y0) = ((w - side) / 2, (h - side) / 2);
        let centre: Vec<u8> = (y0..y0 + side)
            .flat_map(|y| whole.rgb[((y * w + x0) * 3) as usize..((y * w + x0 + side) * 3) as usize].iter().copied())
            .collect();
        let d = mean_abs_diff(&centre, &same[0].rgb);
        assert!(d < 3.0, "{name}: centre differs from the square frame by {d:.1}");
    }
    // Transparent pixels come out white, as in the square frames.
    let alpha = frames(&fixture("matrix/alpha_png.mov"), 32, Some(160));
    let f = full(&alpha[0]);
    assert_eq!((f.width, f.height), (160, 90));
    // The transparent band (x 140..179 of 320) over pure green.
    let px = &f.rgb[(45 * 160 + 80) * 3..(45 * 160 + 80) * 3 + 3];
    assert!(px.iter().all(|&v| v >= 245), "transparent pixel shows {px:?}, expected white");
}

/// A still on a plain background is fitted whole into the square frame and padded with that
/// background, not centre-cropped: the two red blocks at the far ends of a wide white picture
/// (both outside its centre square) are in the frame. Photographs keep the centre crop
/// (`still_images_give_their_whole_picture`).
#[test]
fn a_wide_drawing_on_white_is_fitted_whole_into_the_square_frame() {
    let path = std::env::temp_dir().join(format!("medley-plain-{}.png", std::process::id()));
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "color=white:s=400x200", "-vf"])
        .arg("drawbox=x=10:y=75:w=50:h=50:color=red:t=fill,drawbox=x=340:y=75:w=50:h=50:color=red:t=fill")
        .args(["-frames:v", "1"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg could not draw the picture");
    let got = frames(&path, 100, None);
    std::fs::remove_file(&path).ok();
    let rgb = &got[0].rgb;
    assert_eq!(rgb.len(), 100 * 100 * 3);
    let px = |x: usize, y: usize| [rgb[(y * 100 + x) * 3], rgb[(y * 100 + x) * 3 + 1], rgb[(y * 100 + x) * 3 + 2]];
    let red = |p: [u8; 3]| p[0] > 200 && p[1] < 60 && p[2] < 60;
    let white = |p: [u8; 3]| p.iter().all(|&c| c > 240);
    // The picture is 100 x 50 in the middle (rows 25..75); its blocks at x 2..15 and 85..97.
    assert!(red(px(8, 50)) && red(px(91, 50)), "both ends of the picture are in the frame");
    assert!(white(px(50, 50)), "its white middle");
    assert!(white(px(50, 5)) && white(px(50, 95)) && white(px(2, 2)), "padded with its background above and below");
}
