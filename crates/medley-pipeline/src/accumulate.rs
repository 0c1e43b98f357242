//! Accumulators while a file streams past: frames and audio windows are gathered into batched
//! model calls, and the outputs pooled into the item's vectors and handed to the segmenter.

use std::cell::RefCell;

use medley_media::Frame;
use medley_models::ModelError;

use crate::clock::Busy;
use crate::models::ModelSet;
use crate::pool::{MeanPool, miscounted};
use crate::segments::Segmenter;

/// Frames in, batched image-encoder calls, pooled embedding and class probabilities out.
pub(crate) struct VisualAccumulator<'a> {
    models: &'a ModelSet,
    batch: usize,
    pending: Vec<Frame>,
    /// With a captioner: the frame nearest `middle_s` so far (the one it captions).
    middle_s: f64,
    pub(crate) middle: Option<Frame>,
    pub(crate) embedding: MeanPool,
    pub(crate) probabilities: MeanPool,
    /// Each frame's colour shares, when the vision stage names colours.
    pub(crate) colours: MeanPool,
    /// Frames in the image-text space (`clip`), when the pipeline has such a model.
    pub(crate) clip: MeanPool,
    segmenter: &'a RefCell<Segmenter>,
    pub(crate) error: Option<ModelError>,
    /// Lines of on-screen text read, with the time of their frame, in time order.
    pub(crate) read: Vec<(f64, String)>,
    frames_seen: usize,
    /// The square picture of the last frame read, to tell when the picture changed.
    last_read: Option<Vec<u8>>,
}

impl<'a> VisualAccumulator<'a> {
    pub(crate) fn new(models: &'a ModelSet, batch: usize, middle_s: f64, segmenter: &'a RefCell<Segmenter>) -> Self {
        Self {
            models,
            batch: batch.max(1),
            pending: Vec::new(),
            middle_s,
            middle: None,
            embedding: MeanPool::default(),
            probabilities: MeanPool::default(),
            colours: MeanPool::default(),
            clip: MeanPool::default(),
            segmenter,
            error: None,
            read: Vec::new(),
            frames_seen: 0,
            last_read: None,
        }
    }

    /// Read the frame's on-screen text when the reader is on and the frame is due: every
    /// `ocr.every`th frame, or one whose picture changed since the last frame read.
    fn read_text(&mut self, frame: &Frame) {
        let Some(reader) = &self.models.reader else { return };
        let ocr = &self.models.config.ocr;
        let due = self.frames_seen.is_multiple_of(ocr.every)
            || (ocr.changed > 0.0
                && self.last_read.as_deref().is_some_and(|last| mean_abs_diff(last, &frame.rgb) > ocr.changed));
        self.frames_seen += 1;
        if !due || self.error.is_some() {
            return;
        }
        self.last_read = Some(frame.rgb.clone());
        let (rgb, width, height) = match &frame.full {
            Some(f) => (f.rgb.as_slice(), f.width, f.height),
            None => (frame.rgb.as_slice(), frame.size, frame.size),
        };
        match self.models.call(Busy::Ocr, || reader.read(rgb, width, height)) {
            Ok(lines) => self.read.extend(
                lines
                    .into_iter()
                    // A confident read of the whole picture is kept even when short: the lone glyph
                    // is what the picture shows.
                    .filter(|l| l.score >= ocr.min_score && (l.whole_picture || medley_models::reads_as_words(&l.text)))
                    .map(|l| (frame.pts_s, l.text.trim().to_string())),
            ),
            Err(e) => self.error = Some(e),
        }
    }

    pub(crate) fn push(&mut self, mut frame: Frame) {
        self.read_text(&frame);
        // The whole picture is only for the reader; the rest of the pipeline keeps the square.
        frame.full = None;
        let nearer = |f: &Frame| (f.pts_s - self.middle_s).abs();
        if self.models.captioner.is_some() {
            if self.middle.as_ref().is_none_or(|m| nearer(&frame) < nearer(m)) {
                self.middle = Some(frame.clone());
            }
            if self.models.config.captions.segments {
                self.segmenter.borrow_mut().picture(frame.pts_s, frame.shot, &frame.rgb, frame.size);
            }
        }
        self.pending.push(frame);
        if self.pending.len() >= self.batch {
            self.flush();
        }
    }

    pub(crate) fn flush(&mut self) {
        if self.error.is_none() && !self.pending.is_empty() {
            let (times, images): (Vec<_>, Vec<_>) = self.pending.drain(..).map(|f| ((f.pts_s, f.shot), f.rgb)).unzip();
            let n = images.len();
            let mut clip = Vec::new();
            if let Some(model) = &self.models.clip {
                let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
                let size = self.models.vision.input_size();
                match self.models.call(Busy::Vision, || model.embed(&refs, size)) {
                    Ok(vs) if vs.len() == n => clip = vs,
                    Ok(vs) => self.error = Some(miscounted("image-text model", n, vs.len())),
                    Err(e) => self.error = Some(e),
                }
            }
            clip.iter().for_each(|v| self.clip.add(v));
            let colours: Vec<[f32; medley_models::COLOUR_TERMS.len()]> = if self.models.vision.names_colours() {
                images.iter().map(|rgb| medley_models::colour_shares(rgb)).collect()
            } else {
                Vec::new()
            };
            colours.iter().for_each(|c| self.colours.add(c));
            match self.models.call(Busy::Vision, || self.models.vision.encode(images)) {
                Ok(outs) if outs.len() == n => {
                    outs.iter().zip(times).enumerate().for_each(|(i, (o, (pts_s, shot)))| {
                        self.embedding.add(&o.embedding);
                        self.probabilities.add(&o.probabilities);
                        let frame = crate::segments::FrameOut {
                            embedding: &o.embedding,
                            probabilities: &o.probabilities,
                            clip: clip.get(i).map(Vec::as_slice),
                            colours: colours.get(i).map(|c| c.as_slice()),
                        };
                        self.segmenter.borrow_mut().frame(pts_s, shot, frame);
                    })
                }
                Ok(outs) => self.error = Some(miscounted("image encoder", n, outs.len())),
                Err(e) => self.error = Some(e),
            }
        }
        self.pending.clear();
    }
}

/// Mean absolute difference of two equal-length byte pictures, 0..1 (1 when the sizes differ).
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 1.0;
    }
    let sum: u64 = a.iter().zip(b).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f32 / (a.len() as f32 * 255.0)
}

/// Mono samples in, fixed windows cut, batched audio-encoder calls, pooled embedding out.
pub(crate) struct AudioAccumulator<'a> {
    models: &'a ModelSet,
    batch: usize,
    buffer: Vec<f32>,
    windows: Vec<Vec<f32>>,
    pub(crate) embedding: MeanPool,
    segmenter: &'a RefCell<Segmenter>,
    pub(crate) error: Option<ModelError>,
}

impl<'a> AudioAccumulator<'a> {
    pub(crate) fn new(models: &'a ModelSet, batch: usize, segmenter: &'a RefCell<Segmenter>) -> Self {
        Self {
            models,
            batch: batch.max(1),
            buffer: Vec::new(),
            windows: Vec::new(),
            embedding: MeanPool::default(),
            segmenter,
            error: None,
        }
    }

    pub(crate) fn push(&mut self, samples: &[f32]) {
        let w = self.models.sound.window().max(1);
        self.buffer.extend_from_slice(samples);
        while self.buffer.len() >= w {
            let rest = self.buffer.split_off(w);
            let window = std::mem::replace(&mut self.buffer, rest);
            self.add_window(window);
        }
    }

    fn add_window(&mut self, mut window: Vec<f32>) {
        // aiSFX was trained on peak-normalised audio. Normalising per window (not per file)
        // keeps decoding streaming; the floor keeps near-silence from being blown up to noise.
        let peak = window.iter().fold(0f32, |m, x| m.max(x.abs()));
        if peak > 1e-3 {
            window.iter_mut().for_each(|x| *x /= peak);
        }
        self.windows.push(window);
        if self.windows.len() >= self.batch {
            self.flush();
        }
    }

    /// The tail becomes a zero-padded window if it holds at least a second of sound, or if
    /// the whole file is shorter than one window (so short clips still get a vector).
    pub(crate) fn finish(&mut self) {
        let (w, rate) = (self.models.sound.window(), self.models.sound.sample_rate() as usize);
        let tail = std::mem::take(&mut self.buffer);
        if tail.len() >= rate || (self.embedding.count() == 0 && self.windows.is_empty() && tail.len() >= rate / 10) {
            let mut padded = tail;
            padded.resize(w, 0.0);
            self.add_window(padded);
        }
        self.flush();
    }

    fn flush(&mut self) {
        if self.error.is_none() && !self.windows.is_empty() {
            let refs: Vec<&[f32]> = self.windows.iter().map(Vec::as_slice).collect();
            let sound = &self.models.sound;
            let window_s = sound.window() as f64 / f64::from(sound.sample_rate().max(1));
            match self.models.call(Busy::Audio, || sound.encode(&refs)) {
                Ok(outs) if outs.len() == refs.len() => outs.iter().for_each(|o| {
                    let middle_s = (self.embedding.count() as f64 + 0.5) * window_s;
                    self.segmenter.borrow_mut().audio(middle_s, o);
                    self.embedding.add(o);
                }),
                Ok(outs) => self.error = Some(miscounted("audio encoder", refs.len(), outs.len())),
                Err(e) => self.error = Some(e),
            }
        }
        self.windows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_that_differ_are_told_apart() {
        assert_eq!(mean_abs_diff(&[0, 0], &[0, 0]), 0.0);
        assert_eq!(mean_abs_diff(&[0, 255], &[255, 255]), 0.5);
        assert_eq!(mean_abs_diff(&[0], &[0, 0]), 1.0);
    }
}
