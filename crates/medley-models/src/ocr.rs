//! On-screen text: PP-OCR text detection (DB: a per-pixel text probability map) and
//! recognition (CRNN/SVTR with CTC over a character dictionary), as rapidocr runs PP-OCRv4,
//! with its thresholds from `model.toml`.
//!
//! Boxes are axis-aligned (the bounding box of each connected region of the probability map):
//! overlaid captions and title cards are level, so rotated boxes would buy nothing here and
//! would need a perspective warp per crop.

use std::sync::Mutex;

use ort::session::Session;
use serde::Deserialize;

use crate::runtime::{Array, run_named};
use crate::spec::ModelSpec;
use crate::{ModelError, ModelHome, Runtime};

/// The `[ocr]` section of a `model.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct OcrSpec {
    pub det_file: String,
    pub det_input: String,
    pub det_output: String,
    /// Detection input size: with `det_limit_type = "min"` the shorter side is brought up to
    /// this (never down); with `"max"` the longer side is brought down to it (never up).
    /// Both sides are then rounded to a multiple of 32.
    pub det_limit_side: u32,
    pub det_limit_type: String,
    /// The longer side of the detection input is never above this.
    #[serde(default = "max_side")]
    pub det_max_side: u32,
    /// Per channel, in 0..255 pixel units, in the graphs' channel order: `x' = (x - mean) / std`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The graphs take BGR (PaddleOCR models are trained on OpenCV pictures).
    #[serde(default)]
    pub bgr: bool,
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// Mean probability inside a box below which it is dropped.
    pub box_thresh: f32,
    /// Boxes grow by `area * unclip_ratio / perimeter` on every side (DB shrinks text regions
    /// in training; this undoes it).
    pub unclip_ratio: f32,
    /// Dilate the text mask by a 2x2 kernel before finding regions.
    #[serde(default)]
    pub dilate: bool,
    #[serde(default = "min_box_side")]
    pub min_box_side: f32,
    #[serde(default = "max_candidates")]
    pub max_candidates: usize,
    pub rec_file: String,
    pub rec_input: String,
    pub rec_output: String,
    pub rec_height: u32,
    /// Crops are padded to at least this width.
    pub rec_width: u32,
    /// ... and never made wider than this.
    pub rec_max_width: u32,
    pub rec_batch: usize,
    /// `cubic` (default) or `linear` resizing of crops to the recognition height.
    #[serde(default)]
    pub rec_interpolation: Option<String>,
    /// One character per line; CTC class `i + 1` is line `i`.
    pub dictionary: String,
    /// The CTC blank class (0 for PP-OCR).
    pub blank: usize,
    /// The class after the dictionary is a space.
    #[serde(default)]
    pub space_at_end: bool,
    /// Lines whose mean character confidence is below this are dropped.
    pub text_score: f32,
    /// When detection finds no words, the whole picture is read as one line and kept at this
    /// confidence or above (above 1 turns it off). Detection misses a glyph that fills the
    /// picture (a numeral, a letter, a one-word title card): DB is trained on lines at a small
    /// fraction of the frame. Measured with rapidocr on pictures detection found nothing in: at
    /// 0.9, 53 of 63 reads of Tux Paint's 626 such stamps were the letter or digit drawn (at
    /// 0.95, 40 of 47), and none of 132 video frames (Big Buck Bunny, bikes, earth, trailer,
    /// carphone) nor 5 photographs read anything.
    #[serde(default = "whole_picture_score")]
    pub whole_picture_score: f32,
}

fn max_side() -> u32 {
    2000
}
fn min_box_side() -> f32 {
    3.0
}
fn max_candidates() -> usize {
    1000
}
fn whole_picture_score() -> f32 {
    0.9
}

/// One line of text read from a picture.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrLine {
    pub text: String,
    /// Mean character confidence, 0..1.
    pub score: f32,
    /// `[x0, y0, x1, y1]` in pixels of the picture read.
    pub bbox: [f32; 4],
    /// Read from the whole picture because detection found no text in it (see
    /// [`OcrSpec::whole_picture_score`]): often one glyph, the picture's subject.
    pub whole_picture: bool,
}

/// Whether a line read is text worth keeping on its own: at least 3 letters or digits.
/// Drawings and textures read as stray single characters ("P", "o"), and one of those embedded
/// weighs as much as the picture's labels in the text space (measured on the labelled set: 5
/// of 227 pictures had only such lines).
pub fn reads_as_words(line: &str) -> bool {
    line.chars().filter(|c| c.is_alphanumeric()).count() >= 3
}

/// A text box found by detection, with its mean text probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBox {
    /// `[x0, y0, x1, y1]` in whole pixels of the picture read.
    pub bbox: [u32; 4],
    pub score: f32,
}

/// Reads the lines of text in an RGB picture.
pub struct TextReader {
    id: String,
    spec: OcrSpec,
    det: Mutex<Session>,
    rec: Mutex<Session>,
    /// CTC classes: index 0 the blank, then the dictionary (then a space).
    labels: Vec<String>,
}

impl TextReader {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let section = spec.section(&spec.ocr, "ocr")?.clone();
        let bad = |message: String| ModelError::Spec { path: spec.dir.join("model.toml"), message };
        if !matches!(section.det_limit_type.as_str(), "min" | "max") {
            return Err(bad(format!("[ocr] det_limit_type is {:?}, expected min or max", section.det_limit_type)));
        }
        if section.rec_height == 0 || section.rec_batch == 0 || section.std.contains(&0.0) {
            return Err(bad("[ocr] rec_height, rec_batch and std must not be zero".into()));
        }
        let chars = spec.labels(&section.dictionary)?;
        let mut labels = Vec::with_capacity(chars.len() + 2);
        labels.extend(chars);
        if section.space_at_end {
            labels.push(" ".into());
        }
        if section.blank > labels.len() {
            return Err(bad(format!("[ocr] blank {} is past the dictionary", section.blank)));
        }
        labels.insert(section.blank, String::new());
        let det = rt.session(&spec.id, &spec.file(&section.det_file)?)?;
        let rec = rt.session(&spec.id, &spec.file(&section.rec_file)?)?;
        Ok(Self { id: spec.id.clone(), spec: section, det, rec, labels })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lines of text in an RGB24 picture of `width` x `height`, top to bottom (lines
    /// within 10 pixels of each other's top left to right). When none of them
    /// [reads as words](reads_as_words) (nothing detected, or only stray marks and fragments of
    /// a glyph), the whole picture read as one line instead, if it reads confidently.
    pub fn read(&self, rgb: &[u8], width: u32, height: u32) -> Result<Vec<OcrLine>, ModelError> {
        let boxes = self.detect(rgb, width, height)?;
        let lines = self.recognize(rgb, width, height, &boxes)?;
        if lines.iter().any(|l| reads_as_words(&l.text)) || self.spec.whole_picture_score > 1.0 {
            return Ok(lines);
        }
        // Not through `crop`: a portrait picture is not a vertical line of text to turn.
        let whole = self.rec_batch(&[(rgb, width as usize, height as usize)])?.pop().and_then(|(text, score)| {
            let text = text.trim().to_string();
            (!text.is_empty() && score >= self.spec.whole_picture_score).then_some(OcrLine {
                text,
                score,
                bbox: [0.0, 0.0, width as f32, height as f32],
                whole_picture: true,
            })
        });
        Ok(whole.map_or(lines, |line| vec![line]))
    }

    /// Where the text is: boxes in reading order.
    pub fn detect(&self, rgb: &[u8], width: u32, height: u32) -> Result<Vec<TextBox>, ModelError> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || rgb.len() != w * h * 3 {
            return Err(ModelError::input(
                &self.id,
                format!("picture has {} bytes, expected {width}x{height} RGB24", rgb.len()),
            ));
        }
        let s = &self.spec;
        let (dw, dh) = det_size(w, h, s);
        let resized = resize(rgb, w, h, dw, dh, Interp::Linear);
        let input = Array::F32(vec![1, 3, dh, dw], self.to_planes(&resized, dw * dh));
        let out = run_named(&self.det, &self.id, &[(s.det_input.as_str(), &input)], &[s.det_output.as_str()])?;
        let map = &out[&s.det_output];
        let prob = map.f32s().unwrap_or_default();
        if map.shape() != [1, 1, dh, dw] {
            return Err(ModelError::output(
                &self.id,
                format!("{} has shape {:?}, expected [1, 1, {dh}, {dw}]", s.det_output, map.shape()),
            ));
        }
        let mut boxes = db_boxes(prob, dw, dh, w, h, s);
        sort_reading_order(&mut boxes);
        Ok(boxes)
    }

    /// Read the text in each box (from [`TextReader::detect`]); boxes whose text scores under
    /// the model's floor (or reads nothing) are left out. Order is kept.
    pub fn recognize(
        &self,
        rgb: &[u8],
        width: u32,
        height: u32,
        boxes: &[TextBox],
    ) -> Result<Vec<OcrLine>, ModelError> {
        let (w, h) = (width as usize, height as usize);
        if rgb.len() != w * h * 3 {
            return Err(ModelError::input(
                &self.id,
                format!("picture has {} bytes, expected {width}x{height} RGB24", rgb.len()),
            ));
        }
        let crops: Vec<(Vec<u8>, usize, usize)> = boxes.iter().map(|b| crop(rgb, w, h, b.bbox)).collect();
        // Crops of similar shape go together so little of each batch is padding.
        let mut order: Vec<usize> = (0..crops.len()).collect();
        order.sort_by(|&a, &b| ratio(crops[a].1, crops[a].2).total_cmp(&ratio(crops[b].1, crops[b].2)));
        let mut read: Vec<Option<(String, f32)>> = vec![None; crops.len()];
        for chunk in order.chunks(self.spec.rec_batch) {
            let batch: Vec<(&[u8], usize, usize)> =
                chunk.iter().map(|&i| (crops[i].0.as_slice(), crops[i].1, crops[i].2)).collect();
            for (&i, r) in chunk.iter().zip(self.rec_batch(&batch)?) {
                read[i] = Some(r);
            }
        }
        Ok(boxes
            .iter()
            .zip(read)
            .filter_map(|(b, r)| {
                let (text, score) = r?;
                let text = text.trim().to_string();
                (!text.is_empty() && score >= self.spec.text_score).then(|| OcrLine {
                    text,
                    score,
                    bbox: b.bbox.map(|v| v as f32),
                    whole_picture: false,
                })
            })
            .collect())
    }

    /// Recognise one batch of crops: resized to the model's height keeping aspect, padded to
    /// the widest, CTC greedy decoding.
    fn rec_batch(&self, crops: &[(&[u8], usize, usize)]) -> Result<Vec<(String, f32)>, ModelError> {
        let s = &self.spec;
        let rh = s.rec_height as usize;
        let max_ratio = crops.iter().map(|c| ratio(c.1, c.2)).fold(s.rec_width as f32 / rh as f32, f32::max);
        let rw = ((rh as f32 * max_ratio) as usize).clamp(1, s.rec_max_width.max(1) as usize);
        let interp = match s.rec_interpolation.as_deref() {
            Some("linear") => Interp::Linear,
            _ => Interp::Cubic,
        };
        let plane = rh * rw;
        // Zero after normalising: padding is mid grey, as PaddleOCR pads.
        let mut input = vec![0f32; crops.len() * 3 * plane];
        for (b, (pixels, cw, ch)) in crops.iter().enumerate() {
            let tw = ((rh as f32 * *cw as f32 / *ch as f32).ceil() as usize).clamp(1, rw);
            let resized = resize(pixels, *cw, *ch, tw, rh, interp);
            let planes = self.to_planes(&resized, tw * rh);
            let base = b * 3 * plane;
            for c in 0..3 {
                for y in 0..rh {
                    let src = &planes[c * tw * rh + y * tw..c * tw * rh + (y + 1) * tw];
                    input[base + c * plane + y * rw..base + c * plane + y * rw + tw].copy_from_slice(src);
                }
            }
        }
        let input = Array::F32(vec![crops.len(), 3, rh, rw], input);
        let out = run_named(&self.rec, &self.id, &[(s.rec_input.as_str(), &input)], &[s.rec_output.as_str()])?;
        let probs = &out[&s.rec_output];
        let shape = probs.shape();
        if shape.len() != 3 || shape[0] != crops.len() || shape[2] != self.labels.len() {
            return Err(ModelError::output(
                &self.id,
                format!(
                    "{} has shape {shape:?}, expected [{}, steps, {}] (the dictionary's classes)",
                    s.rec_output,
                    crops.len(),
                    self.labels.len()
                ),
            ));
        }
        let data = probs.f32s().unwrap_or_default();
        let (steps, classes) = (shape[1], shape[2]);
        Ok((0..crops.len())
            .map(|b| ctc_greedy(&data[b * steps * classes..(b + 1) * steps * classes], classes, s.blank, &self.labels))
            .collect())
    }

    /// Packed RGB24 to normalised planes in the graphs' channel order.
    fn to_planes(&self, rgb: &[f32], plane: usize) -> Vec<f32> {
        let s = &self.spec;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let src = if s.bgr { 2 - c } else { c };
                out[c * plane + i] = (px[src] - s.mean[c]) / s.std[c];
            }
        }
        out
    }
}

/// The detection input size for a `w` x `h` picture: limited as the spec says, multiples of 32.
fn det_size(w: usize, h: usize, s: &OcrSpec) -> (usize, usize) {
    let (wf, hf) = (w as f32, h as f32);
    let limit = s.det_limit_side as f32;
    let mut ratio = match s.det_limit_type.as_str() {
        "max" if wf.max(hf) > limit => limit / wf.max(hf),
        "min" if wf.min(hf) < limit => limit / wf.min(hf),
        _ => 1.0,
    };
    if wf.max(hf) * ratio > s.det_max_side as f32 {
        ratio = s.det_max_side as f32 / wf.max(hf);
    }
    let round32 = |v: f32| (((v * ratio) as usize as f32 / 32.0).round() as usize * 32).max(32);
    (round32(wf), round32(hf))
}

/// DB postprocess: binarise the probability map, take each 8-connected region's bounding
/// box, score it by the mean probability inside, grow it by the unclip distance, and scale it
/// to the picture (`w` x `h`).
fn db_boxes(prob: &[f32], dw: usize, dh: usize, w: usize, h: usize, s: &OcrSpec) -> Vec<TextBox> {
    let mut mask: Vec<bool> = prob.iter().map(|&p| p > s.thresh).collect();
    if s.dilate {
        // OpenCV's 2x2 kernel (anchor at its centre): a pixel is set when it or its left,
        // upper or upper-left neighbour is.
        let src = mask.clone();
        for y in 0..dh {
            for x in 0..dw {
                let at = |dx: usize, dy: usize| x >= dx && y >= dy && src[(y - dy) * dw + x - dx];
                mask[y * dw + x] = at(0, 0) || at(1, 0) || at(0, 1) || at(1, 1);
            }
        }
    }
    let mut boxes = Vec::new();
    let mut seen = vec![false; mask.len()];
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        if boxes.len() >= s.max_candidates {
            break;
        }
        // Flood fill one region, keeping its extent.
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % dw, i / dw);
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
            for ny in y.saturating_sub(1)..=(y + 1).min(dh - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(dw - 1) {
                    let j = ny * dw + nx;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        // Sizes between pixel centres, as OpenCV measures a contour.
        let (bw, bh) = ((x1 - x0) as f32, (y1 - y0) as f32);
        if bw.min(bh) < s.min_box_side {
            continue;
        }
        let mut sum = 0f64;
        for y in y0..=y1 {
            sum += prob[y * dw + x0..=y * dw + x1].iter().map(|&p| f64::from(p)).sum::<f64>();
        }
        let score = (sum / ((x1 - x0 + 1) * (y1 - y0 + 1)) as f64) as f32;
        if score < s.box_thresh {
            continue;
        }
        let d = bw * bh * s.unclip_ratio / (2.0 * (bw + bh));
        if bw.min(bh) + 2.0 * d < s.min_box_side + 2.0 {
            continue;
        }
        let sx = w as f32 / dw as f32;
        let sy = h as f32 / dh as f32;
        // Rounded to the map's grid (rapidocr's polygon offsetting works in whole pixels),
        // scaled, rounded again and kept inside the picture (last pixel inclusive, as rapidocr
        // clips): a pixel off either way can change how a crop reads.
        let fit = |v: f32, scale: f32, n: usize| (v.round() * scale).round().clamp(0.0, (n - 1) as f32) as u32;
        let bbox = [
            fit(x0 as f32 - d, sx, w),
            fit(y0 as f32 - d, sy, h),
            fit(x1 as f32 + d, sx, w),
            fit(y1 as f32 + d, sy, h),
        ];
        if bbox[2] - bbox[0] <= 3 || bbox[3] - bbox[1] <= 3 {
            continue;
        }
        boxes.push(TextBox { bbox, score });
    }
    boxes
}

/// Top to bottom; boxes whose tops are within 10 pixels count as one row, left to right.
fn sort_reading_order(boxes: &mut [TextBox]) {
    boxes.sort_by_key(|b| (b.bbox[1], b.bbox[0]));
    for i in 0..boxes.len().saturating_sub(1) {
        for j in (0..=i).rev() {
            let (a, b) = (boxes[j].bbox, boxes[j + 1].bbox);
            if a[1].abs_diff(b[1]) < 10 && b[0] < a[0] {
                boxes.swap(j, j + 1);
            } else {
                break;
            }
        }
    }
}

/// The pixels of a box (`x0..x1`, `y0..y1`, end exclusive); a box at least 1.5 times taller
/// than wide is turned a quarter anticlockwise so vertical text reads left to right.
fn crop(rgb: &[u8], w: usize, h: usize, bbox: [u32; 4]) -> (Vec<u8>, usize, usize) {
    let x0 = (bbox[0] as usize).min(w - 1);
    let y0 = (bbox[1] as usize).min(h - 1);
    let cw = (bbox[2] as usize).saturating_sub(x0).clamp(1, w - x0);
    let ch = (bbox[3] as usize).saturating_sub(y0).clamp(1, h - y0);
    let mut out = Vec::with_capacity(cw * ch * 3);
    for y in y0..y0 + ch {
        out.extend_from_slice(&rgb[(y * w + x0) * 3..(y * w + x0 + cw) * 3]);
    }
    if ch as f32 / cw as f32 >= 1.5 {
        let mut rot = vec![0u8; out.len()];
        // Anticlockwise: source (x, y) goes to (y, cw - 1 - x) in a ch-wide picture.
        for y in 0..ch {
            for x in 0..cw {
                let d = ((cw - 1 - x) * ch + y) * 3;
                rot[d..d + 3].copy_from_slice(&out[(y * cw + x) * 3..(y * cw + x) * 3 + 3]);
            }
        }
        return (rot, ch, cw);
    }
    (out, cw, ch)
}

/// Width over height.
fn ratio(w: usize, h: usize) -> f32 {
    w as f32 / h as f32
}

/// CTC greedy decoding of one `[steps, classes]` probability matrix: the best class per step,
/// repeats merged, blanks dropped; the score is the mean probability of the kept steps.
fn ctc_greedy(probs: &[f32], classes: usize, blank: usize, labels: &[String]) -> (String, f32) {
    let mut text = String::new();
    let mut kept = Vec::new();
    let mut prev = None;
    for step in probs.chunks_exact(classes) {
        let (best, p) = step
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |acc, (i, p)| if p > acc.1 { (i, p) } else { acc });
        if best != blank && prev != Some(best) {
            text.push_str(labels.get(best).map_or("", String::as_str));
            kept.push(p);
        }
        prev = Some(best);
    }
    let score = if kept.is_empty() { 0.0 } else { kept.iter().sum::<f32>() / kept.len() as f32 };
    (text, score)
}

#[derive(Clone, Copy)]
enum Interp {
    Linear,
    /// Keys' cubic with a = -0.75, as OpenCV's INTER_CUBIC.
    Cubic,
}

/// Resize packed 3-channel pixels with OpenCV's sampling geometry (pixel centres aligned,
/// edges replicated, no antialiasing), to floats in 0..255.
fn resize(src: &[u8], w: usize, h: usize, dw: usize, dh: usize, interp: Interp) -> Vec<f32> {
    // Bilinear runs two taps, not bicubic's four with two weights zero: the detector's input
    // is a whole frame, and the resize was 2.3% of the pipeline's CPU time.
    match interp {
        Interp::Linear => resize_with(src, w, h, &linear_taps(w, dw), &linear_taps(h, dh)),
        Interp::Cubic => resize_with(src, w, h, &cubic_taps(w, dw), &cubic_taps(h, dh)),
    }
}

/// For each destination index, `N` source indices and their weights.
type Taps<const N: usize> = Vec<([usize; N], [f32; N])>;

fn resize_with<const N: usize>(src: &[u8], w: usize, h: usize, xs: &Taps<N>, ys: &Taps<N>) -> Vec<f32> {
    let (dw, dh) = (xs.len(), ys.len());
    // Horizontal pass into a `dw` x `h` buffer, then vertical.
    let mut mid = vec![0f32; dw * h * 3];
    for (row, mid_row) in src.chunks_exact(w * 3).take(h).zip(mid.chunks_exact_mut(dw * 3)) {
        for ((idx, wt), px) in xs.iter().zip(mid_row.chunks_exact_mut(3)) {
            for (c, v) in px.iter_mut().enumerate() {
                *v = (0..N).map(|k| wt[k] * f32::from(row[idx[k] * 3 + c])).sum();
            }
        }
    }
    let mut out = vec![0f32; dw * dh * 3];
    for ((idx, wt), out_row) in ys.iter().zip(out.chunks_exact_mut(dw * 3)) {
        for (x, o) in out_row.iter_mut().enumerate() {
            let v: f32 = (0..N).map(|k| wt[k] * mid[idx[k] * dw * 3 + x]).sum();
            *o = v.clamp(0.0, 255.0);
        }
    }
    out
}

/// Where destination index `d` falls in the source (pixel centres aligned): the source index
/// at or left of it and the fraction past it.
fn source_position(d: usize, scale: f32) -> (isize, f32) {
    let s = (d as f32 + 0.5) * scale - 0.5;
    let i = s.floor();
    (i as isize, s - i)
}

fn linear_taps(n: usize, dn: usize) -> Taps<2> {
    let scale = n as f32 / dn as f32;
    (0..dn)
        .map(|d| match source_position(d, scale) {
            // OpenCV clamps the position itself at the edges (weight all on the edge).
            (i, _) if i < 0 => ([0; 2], [1.0, 0.0]),
            (i, _) if i as usize >= n - 1 => ([n - 1; 2], [1.0, 0.0]),
            (i, f) => ([i as usize, i as usize + 1], [1.0 - f, f]),
        })
        .collect()
}

fn cubic_taps(n: usize, dn: usize) -> Taps<4> {
    const A: f32 = -0.75;
    let scale = n as f32 / dn as f32;
    let clamp = |i: isize| i.clamp(0, n as isize - 1) as usize;
    (0..dn)
        .map(|d| {
            let (i, f) = source_position(d, scale);
            let w0 = ((A * (f + 1.0) - 5.0 * A) * (f + 1.0) + 8.0 * A) * (f + 1.0) - 4.0 * A;
            let w1 = ((A + 2.0) * f - (A + 3.0)) * f * f + 1.0;
            let w2 = ((A + 2.0) * (1.0 - f) - (A + 3.0)) * (1.0 - f) * (1.0 - f) + 1.0;
            let w3 = 1.0 - w0 - w1 - w2;
            ([clamp(i - 1), clamp(i), clamp(i + 1), clamp(i + 2)], [w0, w1, w2, w3])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stray_characters_are_not_words() {
        assert!(reads_as_words("Mona Lisa"));
        assert!(reads_as_words("1876"));
        assert!(reads_as_words("東京都"));
        for junk in ["P", "o", "1.6", ":1", "G", "  ", "-- -"] {
            assert!(!reads_as_words(junk), "{junk:?}");
        }
    }

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let labels: Vec<String> = ["", "a", "b", " "].iter().map(|s| s.to_string()).collect();
        // a a _ a b _ " " b
        let steps = [1, 1, 0, 1, 2, 0, 3, 2];
        let mut probs = vec![0.0f32; steps.len() * 4];
        for (t, &c) in steps.iter().enumerate() {
            probs[t * 4 + c] = 0.9;
        }
        let (text, score) = ctc_greedy(&probs, 4, 0, &labels);
        assert_eq!(text, "aab b");
        assert!((score - 0.9).abs() < 1e-6);
        assert_eq!(ctc_greedy(&[0.9, 0.1, 0.0, 0.0], 4, 0, &labels), (String::new(), 0.0));
    }

    #[test]
    fn resize_keeps_a_flat_picture_flat_and_maps_corners() {
        let flat = vec![200u8; 7 * 5 * 3];
        for interp in [Interp::Linear, Interp::Cubic] {
            assert!(resize(&flat, 7, 5, 19, 3, interp).iter().all(|&v| (v - 200.0).abs() < 1e-3));
        }
        // Doubling a 2-pixel row: the outer pixels keep the edge values.
        let row = [0u8, 0, 0, 100, 100, 100];
        let up = resize(&row, 2, 1, 4, 1, Interp::Linear);
        assert_eq!((up[0], up[3], up[6], up[9]), (0.0, 25.0, 75.0, 100.0));
    }

    #[test]
    fn reading_order_is_rows_then_left_to_right() {
        let b = |x0, y0| TextBox { bbox: [x0, y0, x0 + 50, y0 + 20], score: 1.0 };
        let mut boxes = vec![b(300, 105), b(10, 300), b(20, 100), b(500, 98)];
        sort_reading_order(&mut boxes);
        let xs: Vec<u32> = boxes.iter().map(|b| b.bbox[0]).collect();
        assert_eq!(xs, [20, 300, 500, 10]);
    }

    #[test]
    fn tall_crops_are_turned_to_read_left_to_right() {
        // A 1x3 column of pixels 0, 1, 2 (top to bottom) becomes a row 0, 1, 2.
        let rgb: Vec<u8> = (0..3u8).flat_map(|v| [v, v, v]).collect();
        let (out, w, h) = crop(&rgb, 1, 3, [0, 0, 1, 3]);
        assert_eq!((w, h), (3, 1));
        assert_eq!([out[0], out[3], out[6]], [0, 1, 2]);
    }
}
