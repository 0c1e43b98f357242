//! Shot boundaries: TransNetV2 over every frame as a tiny picture (48x27 RGB24). The frames go
//! through in windows of 100 that overlap by half; each window keeps the predictions of its
//! middle 50 frames, and the ends are padded with copies of the first and last frame, as the
//! reference implementation's `predict_frames` does.

use std::collections::VecDeque;
use std::sync::Mutex;

use ort::{session::Session, value::TensorRef};
use serde::Deserialize;

use crate::runtime::rows;
use crate::spec::ModelSpec;
use crate::{ModelError, ModelHome, Runtime};

/// The `[shots]` section of a `model.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct ShotSpec {
    pub file: String,
    /// uint8 `[batch, window, height, width, 3]`: RGB24 frames, rows packed.
    pub input: String,
    /// `[batch, window]`: the probability that each frame ends a shot (sigmoid applied).
    pub output: String,
    /// `[batch, window]`: the head trained on every frame of a transition (not used here).
    #[serde(default)]
    pub many_hot: Option<String>,
    pub width: u32,
    pub height: u32,
    /// Frames per window.
    pub window: usize,
    /// Frames at each end of a window whose predictions are dropped (the next or previous
    /// window predicts them with more context); a window advances `window - 2 * context`.
    pub context: usize,
    /// A frame above this probability is a transition.
    pub threshold: f32,
}

/// Finds the frames where one shot ends and the next begins.
pub struct ShotDetector {
    id: String,
    session: Mutex<Session>,
    spec: ShotSpec,
    batch: usize,
}

impl ShotDetector {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let section = spec.section(&spec.shots, "shots")?;
        if section.width == 0 || section.height == 0 || section.window <= 2 * section.context {
            return Err(ModelError::Spec {
                path: spec.dir.join("model.toml"),
                message: format!(
                    "model {}: [shots] needs a non-empty frame size and window > 2 * context (got {}x{}, window {}, context {})",
                    spec.id, section.width, section.height, section.window, section.context
                ),
            });
        }
        let session = rt.session(&spec.id, &spec.file(&section.file)?)?;
        Ok(Self { id: spec.id.clone(), session, spec: section.clone(), batch: 1 })
    }

    /// Run up to `windows` windows at once (default 1: on a CPU a window already keeps every
    /// core busy; on a GPU larger batches pay).
    pub fn with_batch(mut self, windows: usize) -> Self {
        self.batch = windows.max(1);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn spec(&self) -> &ShotSpec {
        &self.spec
    }

    /// The frame size the model takes (48x27 for TransNetV2).
    pub fn frame_size(&self) -> (u32, u32) {
        (self.spec.width, self.spec.height)
    }

    pub fn threshold(&self) -> f32 {
        self.spec.threshold
    }

    /// Each frame's probability of ending a shot. `frames` are every frame of a video in
    /// order, RGB24 at [`Self::frame_size`], scaled (not cropped).
    pub fn detect<F: AsRef<[u8]>>(&self, frames: &[F]) -> Result<Vec<f32>, ModelError> {
        let mut stream = self.stream();
        for frame in frames {
            stream.push(frame.as_ref())?;
        }
        stream.finish()
    }

    /// [`Self::detect`] fed one frame at a time, holding only a window and a half of frames.
    pub fn stream(&self) -> ShotStream<'_> {
        ShotStream {
            detector: self,
            buffer: VecDeque::with_capacity(self.spec.window + self.step()),
            pushed: 0,
            batch: Vec::new(),
            queued: 0,
            probabilities: Vec::new(),
        }
    }

    /// The cut times of a video from its frames' probabilities ([`Self::detect`]) and times,
    /// at the model's threshold (see [`Self::cut_times`]).
    pub fn cuts(&self, probabilities: &[f32], times_s: &[f64]) -> Vec<f64> {
        Self::cut_times(probabilities, times_s, self.spec.threshold)
    }

    /// Cut times from per-frame transition probabilities and the frames' times: one cut per
    /// run of consecutive frames above `threshold`, at the frame after the run's peak
    /// (TransNetV2 scores the last frame of the outgoing shot highest, so that is the first
    /// frame of the new one). A run that starts at the first frame, or peaks at the last,
    /// has no shot on one side and is no cut.
    pub fn cut_times(probabilities: &[f32], times_s: &[f64], threshold: f32) -> Vec<f64> {
        let n = probabilities.len().min(times_s.len());
        let mut cuts = Vec::new();
        let mut i = 0;
        while i < n {
            if probabilities[i] <= threshold {
                i += 1;
                continue;
            }
            let start = i;
            let mut peak = i;
            while i < n && probabilities[i] > threshold {
                if probabilities[i] > probabilities[peak] {
                    peak = i;
                }
                i += 1;
            }
            if start > 0 && peak + 1 < n {
                cuts.push(times_s[peak + 1]);
            }
        }
        cuts
    }

    /// Run whole windows: `frames` holds `windows` windows of `window` frames back to back;
    /// returns each window's per-frame probabilities.
    pub fn run(&self, frames: &[u8], windows: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let s = &self.spec;
        let shape = [windows, s.window, s.height as usize, s.width as usize, 3];
        if frames.len() != shape.iter().product::<usize>() {
            return Err(ModelError::input(
                &self.id,
                format!(
                    "{} bytes for {windows} windows of {} frames of {}x{} RGB24",
                    frames.len(),
                    s.window,
                    s.width,
                    s.height
                ),
            ));
        }
        let tensor = TensorRef::from_array_view((shape, frames)).map_err(|e| ModelError::input(&self.id, e))?;
        let mut session = crate::runtime::lock(&self.session);
        let outputs =
            session.run(ort::inputs![s.input.as_str() => tensor]).map_err(|e| ModelError::session(&self.id, e))?;
        rows(&outputs, &s.output, &self.id, s.window)
    }

    fn step(&self) -> usize {
        self.spec.window - 2 * self.spec.context
    }

    fn frame_bytes(&self) -> usize {
        self.spec.width as usize * self.spec.height as usize * 3
    }
}

/// Frames in one at a time, probabilities out at the end ([`ShotDetector::stream`]).
pub struct ShotStream<'a> {
    detector: &'a ShotDetector,
    /// The padded frame sequence from the next window's first frame on.
    buffer: VecDeque<Vec<u8>>,
    /// Frames pushed (padding not counted).
    pushed: usize,
    /// Windows waiting for a run, back to back, and how many.
    batch: Vec<u8>,
    queued: usize,
    probabilities: Vec<f32>,
}

impl ShotStream<'_> {
    /// The next frame of the video: RGB24 at the detector's frame size.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), ModelError> {
        let d = self.detector;
        if frame.len() != d.frame_bytes() {
            return Err(ModelError::input(
                &d.id,
                format!(
                    "frame {} has {} bytes, expected {}x{} RGB24 ({} bytes)",
                    self.pushed,
                    frame.len(),
                    d.spec.width,
                    d.spec.height,
                    d.frame_bytes()
                ),
            ));
        }
        if self.pushed == 0 {
            // The first window is centred on the first frame: copies of it come before.
            self.buffer.extend(std::iter::repeat_n(frame.to_vec(), d.spec.context));
        }
        self.buffer.push_back(frame.to_vec());
        self.pushed += 1;
        while self.buffer.len() >= d.spec.window {
            self.queue_window()?;
        }
        Ok(())
    }

    /// Predict the frames still waiting (the last window padded with copies of the last
    /// frame) and return every frame's probability, in order.
    pub fn finish(mut self) -> Result<Vec<f32>, ModelError> {
        let d = self.detector;
        while self.probabilities.len() + self.queued * d.step() < self.pushed {
            let Some(last) = self.buffer.back().cloned() else { break };
            while self.buffer.len() < d.spec.window {
                self.buffer.push_back(last.clone());
            }
            self.queue_window()?;
        }
        self.run_queued()?;
        self.probabilities.truncate(self.pushed);
        Ok(self.probabilities)
    }

    /// Copy the window at the buffer's front into the batch, then slide by a step.
    fn queue_window(&mut self) -> Result<(), ModelError> {
        let d = self.detector;
        for frame in self.buffer.iter().take(d.spec.window) {
            self.batch.extend_from_slice(frame);
        }
        self.queued += 1;
        self.buffer.drain(..d.step());
        if self.queued >= d.batch { self.run_queued() } else { Ok(()) }
    }

    fn run_queued(&mut self) -> Result<(), ModelError> {
        if self.queued == 0 {
            return Ok(());
        }
        let d = self.detector;
        let out = d.run(&self.batch, self.queued)?;
        for window in out {
            self.probabilities.extend_from_slice(&window[d.spec.context..d.spec.context + d.step()]);
        }
        self.batch.clear();
        self.queued = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ShotDetector;

    #[test]
    fn one_cut_per_run_after_its_peak() {
        let t: Vec<f64> = (0..12).map(|i| f64::from(i) / 24.0).collect();
        // A hard cut (frame 2 ends a shot), a gradual transition peaking at frame 7, noise
        // below the threshold.
        let p = [0.0, 0.1, 0.9, 0.2, 0.4, 0.6, 0.7, 0.8, 0.55, 0.1, 0.3, 0.0];
        assert_eq!(ShotDetector::cut_times(&p, &t, 0.5), vec![t[3], t[8]]);
        // A run at the very start or peaking at the last frame has no shot before or after.
        let edges = [0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.6, 0.9];
        assert_eq!(ShotDetector::cut_times(&edges, &t, 0.5), Vec::<f64>::new());
        // Times shorter than the probabilities: only frames with a time count.
        assert_eq!(ShotDetector::cut_times(&p, &t[..4], 0.5), vec![t[3]]);
        assert!(ShotDetector::cut_times(&[], &[], 0.5).is_empty());
    }
}
