//! Which video frames to hand out: by time (`fps:R`), spread over the file (`uniform:N`), key
//! frames only (`keyframes`), or one per shot (`shots`).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// How video frames are picked. Every frame handed out carries its exact presentation time.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// The first frame at or after each multiple of `1/R` seconds (by timestamp, so variable
    /// frame rates and gaps still give one frame per tick).
    Fps(f64),
    /// `N` frames at the centres of `N` equal slices of the duration; seeks between them when
    /// that is cheaper than decoding through (never when audio is also wanted: audio needs
    /// the whole file).
    Uniform(u32),
    /// Only key frames are decoded (`skip_frame` non-key); every one is handed out.
    Keyframes,
    /// Shot boundaries from a frame-difference detector; the first frame of each shot (and one
    /// more every `max_gap_s` inside long shots) is handed out, and the shots' start/end times
    /// are kept in [`crate::DecodeStats::shots`].
    Shots(ShotParams),
}

impl Default for Sampler {
    fn default() -> Self {
        Self::Fps(1.0)
    }
}

/// Shot detector settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ShotParams {
    /// No cut is declared less than this long after the previous one.
    pub min_shot_s: f64,
    /// A cut is a mean absolute luma difference from the previous frame above
    /// `median + sensitivity * robust spread` of the recent differences...
    pub sensitivity: f64,
    /// ...and above this absolute floor (mean absolute luma difference, 0..1).
    pub floor: f64,
    /// Inside a shot longer than this, hand out another frame every `max_gap_s` seconds.
    pub max_gap_s: Option<f64>,
}

impl Default for ShotParams {
    fn default() -> Self {
        Self { min_shot_s: 1.0, sensitivity: 6.0, floor: 0.08, max_gap_s: None }
    }
}

/// A shot: `[start_s, end_s)` in seconds from the file's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shot {
    pub index: u32,
    pub start_s: f64,
    pub end_s: f64,
}

impl FromStr for Sampler {
    type Err = String;

    /// `fps:R`, `uniform:N`, `keyframes`, `shots` or `shots:MIN_SHOT_S`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let bad = || format!("bad sampler {s:?}: expected fps:R, uniform:N, keyframes or shots[:MIN_SHOT_S]");
        match (name.to_ascii_lowercase().as_str(), arg) {
            ("fps", Some(r)) => match r.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Ok(Self::Fps(r)),
                _ => Err(bad()),
            },
            ("uniform", Some(n)) => match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Self::Uniform(n)),
                _ => Err(bad()),
            },
            ("keyframes", None) => Ok(Self::Keyframes),
            ("shots", None) => Ok(Self::Shots(ShotParams::default())),
            ("shots", Some(m)) => match m.parse::<f64>() {
                Ok(m) if m.is_finite() && m >= 0.0 => {
                    Ok(Self::Shots(ShotParams { min_shot_s: m, ..Default::default() }))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fps(r) => write!(f, "fps:{r}"),
            Self::Uniform(n) => write!(f, "uniform:{n}"),
            Self::Keyframes => write!(f, "keyframes"),
            Self::Shots(p) if *p == ShotParams::default() => write!(f, "shots"),
            Self::Shots(p) => write!(f, "shots:{}", p.min_shot_s),
        }
    }
}

/// Side of the grey thumbnails the detector compares.
pub(crate) const THUMB_W: usize = 64;
pub(crate) const THUMB_H: usize = 36;
const WINDOW: usize = 48;

/// Frame-difference cut detector over small grey thumbnails: the mean absolute difference
/// from the previous frame against an adaptive threshold over the recent past.
pub(crate) struct ShotDetector {
    params: ShotParams,
    prev: Option<Vec<u8>>,
    recent: VecDeque<f64>,
    shot_start: f64,
    last_emit: f64,
    last_t: f64,
    frame_gap: f64,
    pub shots: u32,
}

pub(crate) enum ShotEvent {
    /// A new shot starts at this frame (the first frame is shot 0).
    Start,
    /// Another frame inside a long shot.
    Inside,
    None,
}

impl ShotDetector {
    pub fn new(params: ShotParams) -> Self {
        Self {
            params,
            prev: None,
            recent: VecDeque::with_capacity(WINDOW),
            shot_start: 0.0,
            last_emit: 0.0,
            last_t: 0.0,
            frame_gap: 0.0,
            shots: 0,
        }
    }

    /// Feed the next frame's thumbnail; returns what to do with it and, on a cut, the shot
    /// that just ended.
    pub fn push(&mut self, thumb: &[u8], t: f64) -> (ShotEvent, Option<Shot>) {
        if t > self.last_t {
            self.frame_gap = t - self.last_t;
        }
        let Some(prev) = self.prev.as_mut() else {
            self.prev = Some(thumb.to_vec());
            self.shot_start = t;
            self.last_emit = t;
            self.last_t = t;
            return (ShotEvent::Start, None);
        };
        let mad = prev.iter().zip(thumb).map(|(&a, &b)| (i32::from(a) - i32::from(b)).unsigned_abs()).sum::<u32>()
            as f64
            / (255.0 * thumb.len().max(1) as f64);
        prev.copy_from_slice(thumb);
        self.last_t = t;

        // Robust statistics of the recent differences (median and median absolute deviation),
        // so a fade or a flash inside a shot does not raise the bar for the next real cut.
        let (centre, spread) = if self.recent.len() >= 4 {
            let mut v: Vec<f64> = self.recent.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            let median = v[v.len() / 2];
            let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
            dev.sort_by(f64::total_cmp);
            (median, 1.4826 * dev[dev.len() / 2])
        } else {
            (0.0, 0.0)
        };
        let score = mad;
        let threshold = (centre + self.params.sensitivity * spread.max(0.005)).max(self.params.floor);
        let is_cut = score > threshold && t - self.shot_start >= self.params.min_shot_s;
        if is_cut {
            let ended = Shot { index: self.shots, start_s: self.shot_start, end_s: t };
            self.shots += 1;
            self.shot_start = t;
            self.last_emit = t;
            // A new shot starts a new statistic.
            self.recent.clear();
            return (ShotEvent::Start, Some(ended));
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(score);
        if let Some(gap) = self.params.max_gap_s
            && t - self.last_emit >= gap
        {
            self.last_emit = t;
            return (ShotEvent::Inside, None);
        }
        (ShotEvent::None, None)
    }

    /// The shot still open at the end of the stream.
    pub fn finish(&mut self) -> Option<Shot> {
        self.prev.as_ref()?;
        let end = self.last_t + self.frame_gap;
        Some(Shot { index: self.shots, start_s: self.shot_start, end_s: end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_samplers() {
        for s in ["fps:1", "fps:0.5", "uniform:8", "keyframes", "shots", "shots:2"] {
            assert_eq!(s.parse::<Sampler>().map(|p| p.to_string()), Ok(s.to_string()));
        }
        for bad in ["fps", "fps:0", "fps:-1", "uniform:0", "uniform:x", "keyframes:2", "scenes", ""] {
            assert!(bad.parse::<Sampler>().is_err(), "{bad} should not parse");
        }
        assert_eq!(Sampler::default(), Sampler::Fps(1.0));
    }

    #[test]
    fn detector_finds_a_hard_cut_and_respects_min_length() {
        let mut d = ShotDetector::new(ShotParams::default());
        let dark = vec![20u8; THUMB_W * THUMB_H];
        let bright = vec![200u8; THUMB_W * THUMB_H];
        let mut starts = vec![];
        for i in 0..96 {
            let t = i as f64 / 24.0;
            // A cut at 2 s, and a flash at 2.5 s that is too soon after it to count.
            let img = if (48..60).contains(&i) || i == 70 { &bright } else { &dark };
            if let (ShotEvent::Start, _) = d.push(img, t) {
                starts.push(i);
            }
        }
        // The return to dark at 2.5 s and the flash are within a second of the cut.
        assert_eq!(starts, vec![0, 48]);
        let last = d.finish().map(|l| (l.index, l.start_s));
        assert_eq!(last, Some((1, 2.0)));
    }
}
