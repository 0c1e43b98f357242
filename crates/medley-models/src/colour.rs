//! Colour names for pictures: how much of a picture's foreground each basic colour term
//! covers, and that share put into a text space like a label bridge. An ImageNet classifier
//! sees a paint pot whatever its paint; "the colour mauve", "a red car" need the colour said.

use std::sync::OnceLock;

use crate::{ModelError, TextEncoder, l2_normalize};

/// Berlin and Kay's eleven basic colour terms, each with a typical sRGB colour: a pixel is
/// named by the nearest of these in CIELAB.
pub const COLOUR_TERMS: [(&str, [u8; 3]); 11] = [
    ("black", [0, 0, 0]),
    ("white", [255, 255, 255]),
    ("grey", [128, 128, 128]),
    ("red", [220, 20, 30]),
    ("orange", [255, 140, 0]),
    ("yellow", [255, 225, 0]),
    ("green", [30, 160, 40]),
    ("blue", [30, 80, 220]),
    ("purple", [120, 40, 160]),
    ("pink", [255, 105, 180]),
    ("brown", [120, 70, 30]),
];

/// How a colour term is said to the text model (measured against the bare name and "something
/// {}" on the Tux Paint stamps: within noise of each other, this one best on the drawings).
const TEMPLATE: &str = "the colour {}";

/// Below this share of foreground the picture is one colour on its background, and the
/// background is all there is to name.
const MIN_FOREGROUND: f32 = 0.05;

/// Fraction of the picture's foreground named by each of [`COLOUR_TERMS`], summing to 1. The
/// background is the term most of the border's pixels have, and is left out (a drawing on
/// white is not "white") unless almost nothing else is there.
pub fn colour_shares(rgb: &[u8]) -> [f32; COLOUR_TERMS.len()] {
    let pixels = rgb.len() / 3;
    let mut shares = [0f32; COLOUR_TERMS.len()];
    if pixels == 0 {
        return shares;
    }
    let lut = lut();
    let term = |p: &[u8]| lut[(usize::from(p[0] >> 3) << 10) | (usize::from(p[1] >> 3) << 5) | usize::from(p[2] >> 3)];
    let mut counts = [0u32; COLOUR_TERMS.len()];
    rgb.chunks_exact(3).for_each(|p| counts[usize::from(term(p))] += 1);
    let side = (pixels as f64).sqrt() as usize;
    let mut border = [0u32; COLOUR_TERMS.len()];
    if side * side == pixels && side > 1 {
        for i in 0..side {
            for (x, y) in [(i, 0), (i, side - 1), (0, i), (side - 1, i)] {
                let at = (y * side + x) * 3;
                border[usize::from(term(&rgb[at..at + 3]))] += 1;
            }
        }
    }
    let background = (0..COLOUR_TERMS.len()).max_by_key(|&t| border[t]).filter(|&t| border[t] > 0);
    let total = pixels as f32;
    if let Some(bg) = background
        && (pixels as u32 - counts[bg]) as f32 / total >= MIN_FOREGROUND
    {
        counts[bg] = 0;
    }
    let kept: u32 = counts.iter().sum();
    for (s, c) in shares.iter_mut().zip(counts) {
        *s = c as f32 / kept.max(1) as f32;
    }
    shares
}

/// The colour terms' embeddings in a text model's space.
pub struct ColourBridge {
    embeddings: Vec<Vec<f32>>,
}

impl ColourBridge {
    pub fn new(text: &TextEncoder) -> Result<Self, ModelError> {
        let prompts: Vec<String> = COLOUR_TERMS.iter().map(|(name, _)| TEMPLATE.replace("{}", name)).collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        Ok(Self { embeddings: text.encode(&refs)? })
    }

    /// The unit-length text-space vector of colour `shares` (as [`colour_shares`] gives, or
    /// their mean over frames). Shares are squared first, so the main colour speaks and a
    /// sprinkle of many says little.
    pub fn project(&self, shares: &[f32]) -> Vec<f32> {
        let dim = self.embeddings.first().map_or(0, Vec::len);
        let mut out = vec![0f32; dim];
        for (s, e) in shares.iter().zip(&self.embeddings) {
            let w = s * s;
            out.iter_mut().zip(e).for_each(|(o, x)| *o += w * x);
        }
        l2_normalize(&mut out);
        out
    }
}

/// Colour term of every 5-bit-per-channel RGB cell (its centre), nearest in CIELAB.
fn lut() -> &'static [u8] {
    static LUT: OnceLock<Vec<u8>> = OnceLock::new();
    LUT.get_or_init(|| {
        let terms: Vec<[f64; 3]> = COLOUR_TERMS.iter().map(|(_, c)| lab(*c)).collect();
        (0..32 * 32 * 32)
            .map(|i: usize| {
                let centre = |q: usize| (q * 8 + 4) as u8;
                let c = lab([centre(i >> 10), centre((i >> 5) & 31), centre(i & 31)]);
                let d = |t: &[f64; 3]| (0..3).map(|k| (c[k] - t[k]).powi(2)).sum::<f64>();
                (0..terms.len()).min_by(|&a, &b| d(&terms[a]).total_cmp(&d(&terms[b]))).unwrap_or(0) as u8
            })
            .collect()
    })
}

/// sRGB (D65) to CIELAB.
fn lab(rgb: [u8; 3]) -> [f64; 3] {
    let lin = |v: u8| {
        let c = f64::from(v) / 255.0;
        if c > 0.04045 { ((c + 0.055) / 1.055).powf(2.4) } else { c / 12.92 }
    };
    let [r, g, b] = rgb.map(lin);
    let xyz = [
        (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883,
    ];
    let f = xyz.map(|t| if t > 0.008856 { t.cbrt() } else { 7.787 * t + 16.0 / 116.0 });
    [116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(side: usize, paint: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
        (0..side * side).flat_map(|i| paint(i % side, i / side)).collect()
    }

    fn share(shares: &[f32], name: &str) -> f32 {
        shares[COLOUR_TERMS.iter().position(|(n, _)| *n == name).unwrap()]
    }

    #[test]
    fn a_blue_blot_on_white_is_blue_not_white() {
        let rgb =
            picture(64, |x, y| if (16..48).contains(&x) && (16..48).contains(&y) { [40, 70, 200] } else { [255; 3] });
        let s = colour_shares(&rgb);
        assert!(share(&s, "blue") > 0.99, "{s:?}");
        assert_eq!(share(&s, "white"), 0.0);
    }

    #[test]
    fn a_picture_of_one_colour_is_that_colour() {
        let s = colour_shares(&picture(32, |_, _| [250, 120, 10]));
        assert!(share(&s, "orange") > 0.99, "{s:?}");
    }

    #[test]
    fn shares_split_between_the_foreground_colours_and_sum_to_one() {
        let rgb = picture(40, |x, y| match (x, y) {
            (0 | 39, _) | (_, 0 | 39) => [0; 3],
            (x, _) if x < 20 => [230, 30, 40],
            _ => [40, 150, 50],
        });
        let s = colour_shares(&rgb);
        assert!((share(&s, "red") - 0.5).abs() < 0.05 && (share(&s, "green") - 0.5).abs() < 0.05, "{s:?}");
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn named_colours_land_on_their_terms() {
        let lut = lut();
        for (name, [r, g, b]) in COLOUR_TERMS {
            let t = lut[(usize::from(r >> 3) << 10) | (usize::from(g >> 3) << 5) | usize::from(b >> 3)];
            assert_eq!(COLOUR_TERMS[usize::from(t)].0, name);
        }
    }
}
