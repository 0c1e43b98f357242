//! Cutting an item into segments (shots, or fixed windows) and pooling each segment's vectors
//! while frames and audio windows stream past, for the `segments` table.

use std::borrow::Cow;
use std::collections::BTreeMap;

use medley_media::Shot;
use medley_models::{ModelError, Segment};
use medley_store::SegmentRow;

use crate::clock::Busy;
use crate::config::SegmentBy;
use crate::models::ModelSet;
use crate::pool::{EventPool, MeanPool, miscounted, top_labels};
use crate::text_space::TextSpaceParts;

/// Pooled outputs of one segment, keyed by the shot index or the window number.
#[derive(Default)]
struct Pools {
    frames: u32,
    visual: MeanPool,
    probabilities: MeanPool,
    colours: MeanPool,
    clip: MeanPool,
    clap: MeanPool,
    audio: MeanPool,
    music: MeanPool,
    tags: MeanPool,
    sounds: EventPool,
    /// Frames kept for the captioner, evenly thinned (see [`Segmenter::picture`]).
    pictures: Thinned,
}

/// At most [`Thinned::CAP`] evenly spaced pictures of a stream of any length: when full, every
/// other one goes and only every second one after that is kept, so a segment's memory stays
/// bounded while its middle stays covered.
#[derive(Default)]
struct Thinned {
    kept: Vec<(f64, Vec<u8>)>,
    seen: usize,
    stride: usize,
}

impl Thinned {
    const CAP: usize = 8;

    fn add(&mut self, pts_s: f64, rgb: &[u8]) {
        let stride = self.stride.max(1);
        if self.seen.is_multiple_of(stride) {
            self.kept.push((pts_s, rgb.to_vec()));
            if self.kept.len() >= Self::CAP {
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride = stride * 2;
            }
        }
        self.seen += 1;
    }

    /// The kept picture nearest `t`.
    fn nearest(&self, t: f64) -> Option<&[u8]> {
        self.kept.iter().min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs())).map(|(_, rgb)| rgb.as_slice())
    }
}

/// What the vision models made of one frame.
pub(crate) struct FrameOut<'a> {
    pub embedding: &'a [f32],
    pub probabilities: &'a [f32],
    /// In the image-text space, when the pipeline has such a model.
    pub clip: Option<&'a [f32]>,
    /// Colour shares, when the vision stage names colours.
    pub colours: Option<&'a [f32]>,
}

pub(crate) struct Segmenter {
    by: SegmentBy,
    /// Window length for `Window`, and for items without shots (audio only) under `Shots`.
    window_s: f64,
    frames: BTreeMap<u32, Pools>,
    /// Audio-encoder and music-tagger windows as (middle time, embedding[, tag probabilities]):
    /// their segment is only known once every shot is (shots end after their frames arrive).
    audio: Vec<(f64, Vec<f32>)>,
    /// Audio-text model windows (the `clap` column), as (middle time, embedding).
    clap: Vec<(f64, Vec<f32>)>,
    music: Vec<(f64, Vec<f32>, Vec<f32>)>,
    /// Sound-event windows as (middle time, class probabilities).
    sounds: Vec<(f64, Vec<f32>)>,
    /// The side of the square pictures kept for the captioner.
    picture_size: u32,
}

impl Segmenter {
    pub fn new(by: SegmentBy, window_s: f64) -> Self {
        Self {
            by,
            window_s,
            frames: BTreeMap::new(),
            audio: Vec::new(),
            clap: Vec::new(),
            music: Vec::new(),
            sounds: Vec::new(),
            picture_size: 0,
        }
    }

    fn enabled(&self) -> bool {
        self.by != SegmentBy::None
    }

    /// The segment a frame at `pts_s` of shot `shot` falls in (none when not segmenting).
    fn key(&self, pts_s: f64, shot: Option<u32>) -> Option<u32> {
        match self.by {
            SegmentBy::None => None,
            SegmentBy::Shots => Some(shot.unwrap_or(0)),
            SegmentBy::Window(w) => Some(window_of(pts_s, w)),
        }
    }

    /// A frame's square picture, kept (thinned) for captioning its segment.
    pub fn picture(&mut self, pts_s: f64, shot: Option<u32>, rgb: &[u8], size: u32) {
        let Some(key) = self.key(pts_s, shot) else { return };
        self.picture_size = size;
        self.frames.entry(key).or_default().pictures.add(pts_s, rgb);
    }

    /// A frame's outputs; `shot` is the frame's shot under the `shots` sampler.
    pub fn frame(&mut self, pts_s: f64, shot: Option<u32>, out: FrameOut<'_>) {
        let Some(key) = self.key(pts_s, shot) else { return };
        let pools = self.frames.entry(key).or_default();
        pools.frames += 1;
        pools.visual.add(out.embedding);
        pools.probabilities.add(out.probabilities);
        if let Some(clip) = out.clip {
            pools.clip.add(clip);
        }
        if let Some(colours) = out.colours {
            pools.colours.add(colours);
        }
    }

    pub fn audio(&mut self, middle_s: f64, embedding: &[f32]) {
        if self.enabled() {
            self.audio.push((middle_s, embedding.to_vec()));
        }
    }

    pub fn clap(&mut self, middle_s: f64, embedding: &[f32]) {
        if self.enabled() {
            self.clap.push((middle_s, embedding.to_vec()));
        }
    }

    pub fn music(&mut self, middle_s: f64, embedding: Option<&[f32]>, probabilities: &[f32]) {
        if self.enabled() {
            self.music.push((middle_s, embedding.map(<[f32]>::to_vec).unwrap_or_default(), probabilities.to_vec()));
        }
    }

    pub fn sound(&mut self, middle_s: f64, probabilities: &[f32]) {
        if self.enabled() {
            self.sounds.push((middle_s, probabilities.to_vec()));
        }
    }

    /// The item's segments in time order, numbered from 0: every shot or window that has a
    /// frame or a sound window, with pooled vectors, labels (from the frames, else the music
    /// tags), the bridge vector, and what was said in it (embedded in one text-encoder call).
    /// No segment reaches past `duration_s` (what was decoded, for a file cut short).
    pub fn finish(
        mut self,
        models: &ModelSet,
        duration_s: Option<f64>,
        shots: &[Shot],
        speech: &[Segment],
        read: &[(f64, String)],
        top_k: usize,
    ) -> Result<Vec<SegmentRow>, ModelError> {
        if !self.enabled() {
            return Ok(Vec::new());
        }
        let by_shot = self.by == SegmentBy::Shots && !shots.is_empty();
        let window = match self.by {
            SegmentBy::Window(w) => w,
            _ => self.window_s,
        };
        let end = duration_s.unwrap_or(f64::INFINITY);
        let key_at = |t: f64| {
            // A zero-padded last sound window is centred past the end: it belongs to the last
            // stretch that was decoded.
            let t = if t >= end { (end - 1e-6).max(0.0) } else { t };
            if by_shot {
                // The last shot starting at or before t.
                let i = shots.partition_point(|s| s.start_s <= t).saturating_sub(1);
                shots.get(i).map_or(0, |s| s.index)
            } else {
                window_of(t, window)
            }
        };
        for (t, v) in std::mem::take(&mut self.audio) {
            self.frames.entry(key_at(t)).or_default().audio.add(&v);
        }
        for (t, v) in std::mem::take(&mut self.clap) {
            self.frames.entry(key_at(t)).or_default().clap.add(&v);
        }
        for (t, v, p) in std::mem::take(&mut self.music) {
            let pools = self.frames.entry(key_at(t)).or_default();
            if !v.is_empty() {
                pools.music.add(&v);
            }
            pools.tags.add(&p);
        }
        for (t, p) in std::mem::take(&mut self.sounds) {
            self.frames.entry(key_at(t)).or_default().sounds.add(&p);
        }
        let mut rows = Vec::with_capacity(self.frames.len());
        // Each segment's visual and music bridges and how much music is heard, for `semantic`.
        let mut parts = Vec::with_capacity(self.frames.len());
        for (key, pools) in &self.frames {
            let (start_s, end_s) = match shots.iter().find(|s| by_shot && s.index == *key) {
                Some(s) => (s.start_s.min(end), s.end_s.min(end)),
                None => (f64::from(*key) * window, (f64::from(*key + 1) * window).min(end)),
            };
            let probabilities = pools.probabilities.mean();
            let tags = pools.tags.mean();
            let sounds = pools.sounds.pooled();
            let colours = pools.colours.mean();
            let visual_bridge = probabilities.as_deref().map(|p| models.vision.bridge(p, colours.as_deref()));
            let music_bridge = match (&models.music, &tags) {
                (Some(m), Some(p)) => Some(m.bridge(p)),
                _ => None,
            };
            let labels = match (&probabilities, &models.music, &tags) {
                (Some(p), _, _) => top_labels(p, models.vision.labels(), top_k),
                (None, Some(m), Some(p)) => top_labels(p, m.labels(), top_k),
                _ => Vec::new(),
            };
            let (sound_tags, sound_bridge) = match (&models.sound_events, &sounds) {
                (Some(s), Some(p)) => (top_labels(p, s.labels(), top_k), Some(s.bridge(p))),
                _ => (Vec::new(), None),
            };
            let said: Vec<&str> = speech
                .iter()
                .filter(|s| (start_s..end_s.max(start_s + 1e-3)).contains(&f64::from((s.start + s.end) / 2.0)))
                .map(|s| s.text.trim())
                .filter(|t| !t.is_empty())
                .collect();
            let in_segment: Vec<(f64, String)> =
                read.iter().filter(|(t, _)| (start_s..end_s.max(start_s + 1e-3)).contains(t)).cloned().collect();
            let music_presence = crate::text_space::music_presence(
                sounds.as_deref(),
                models.sound_events.as_ref().and_then(|s| s.music_class()),
            );
            parts.push((visual_bridge.clone(), music_bridge.clone(), music_presence));
            rows.push(SegmentRow {
                segment: rows.len() as u32,
                start_s,
                end_s: end_s.max(start_s),
                frames_sampled: pools.frames,
                visual: pools.visual.mean(),
                clip: pools.clip.unit_mean(),
                clap: pools.clap.unit_mean(),
                audio: pools.audio.mean(),
                music: pools.music.mean(),
                text: None,
                bridge: visual_bridge.or(music_bridge),
                labels,
                sound_tags,
                ocr_text: crate::item::read_text(&in_segment),
                semantic: None,
                sound_bridge,
                transcript: (!said.is_empty()).then(|| said.join(" ")),
                caption: None,
            });
        }
        self.caption(models, &mut rows)?;
        // What was said, read and captioned in each segment, embedded in one text-encoder call.
        #[derive(Clone, Copy)]
        enum Said {
            Spoken,
            Read,
            Captioned,
        }
        let texts: Vec<(usize, Said, Cow<str>)> = rows
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                let read = r.ocr_text.as_deref().map(crate::numerals::with_numbers_spelled);
                [
                    (Said::Spoken, r.transcript.as_deref().map(Cow::Borrowed)),
                    (Said::Read, read),
                    (Said::Captioned, r.caption.as_deref().map(Cow::Borrowed)),
                ]
                .into_iter()
                .filter_map(move |(kind, t)| t.map(|t| (i, kind, t)))
            })
            .collect();
        let mut ocr_vectors: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
        let mut caption_vectors: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
        if !texts.is_empty() {
            let strs: Vec<&str> = texts.iter().map(|(_, _, t)| t.as_ref()).collect();
            let vectors = models.call(Busy::Text, || models.text.encode(&strs))?;
            if vectors.len() != strs.len() {
                return Err(miscounted("text encoder", strs.len(), vectors.len()));
            }
            let slots: Vec<(usize, Said)> = texts.iter().map(|(i, kind, _)| (*i, *kind)).collect();
            for ((i, kind), v) in slots.into_iter().zip(vectors) {
                match kind {
                    Said::Spoken => rows[i].text = Some(v),
                    Said::Read => ocr_vectors[i] = Some(v),
                    Said::Captioned => caption_vectors[i] = Some(v),
                }
            }
        }
        for (((row, (visual, music, music_presence)), ocr), caption) in
            rows.iter_mut().zip(&parts).zip(&ocr_vectors).zip(&caption_vectors)
        {
            row.semantic = TextSpaceParts {
                visual: visual.as_deref(),
                sound: row.sound_bridge.as_deref(),
                music: music.as_deref(),
                music_presence: *music_presence,
                speech: row.text.as_deref(),
                ocr: ocr.as_deref(),
                caption: caption.as_deref(),
            }
            .fuse(&models.config.text_space);
        }
        Ok(rows)
    }

    /// Caption each segment's kept picture nearest its middle, in one batched captioner call
    /// (`captions.segments`; a segment without pictures, or whose caption is empty, has none).
    fn caption(&self, models: &ModelSet, rows: &mut [SegmentRow]) -> Result<(), ModelError> {
        let Some(captioner) = models.captioner.as_ref().filter(|_| models.config.captions.segments) else {
            return Ok(());
        };
        let mut wanted: Vec<(usize, &[u8])> = Vec::new();
        for (i, (row, pools)) in rows.iter().zip(self.frames.values()).enumerate() {
            if let Some(rgb) = pools.pictures.nearest((row.start_s + row.end_s) / 2.0) {
                wanted.push((i, rgb));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let pictures: Vec<&[u8]> = wanted.iter().map(|(_, rgb)| *rgb).collect();
        let captions = models.call(Busy::Caption, || captioner.caption(&pictures, self.picture_size))?;
        if captions.len() != pictures.len() {
            return Err(miscounted("captioner", pictures.len(), captions.len()));
        }
        for ((i, _), caption) in wanted.iter().zip(captions) {
            rows[*i].caption = Some(caption).filter(|c| !c.trim().is_empty());
        }
        Ok(())
    }
}

fn window_of(t: f64, window_s: f64) -> u32 {
    (t.max(0.0) / window_s).floor() as u32
}
