//! Which video frames to hand out: by time (`fps:R`), spread over the file (`uniform:N`), key
//! frames only (`keyframes`), or one per shot (`shots`, with cuts found by a frame-difference
//! detector, or `cuts:T1,T2,...` known beforehand, e.g. from TransNetV2).

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
    /// Shot boundaries from a frame-difference detector, or the cuts in
    /// [`ShotParams::known_cuts`]; the first frame of each shot (and one more every
    /// `max_gap_s` inside long shots) is handed out, and the shots' start/end times are kept
    /// in [`crate::DecodeStats::shots`].
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
    /// Cut times known beforehand (a shot-boundary model's, say), in seconds from the file's
    /// start: a shot starts at the first frame at or after each one, and the difference
    /// detector (with `min_shot_s`, `sensitivity`, `floor`) is not used. Cuts at or before the
    /// first frame start nothing; several cuts before one frame start one shot.
    pub known_cuts: Option<Vec<f64>>,
}

impl Default for ShotParams {
    fn default() -> Self {
        Self { min_shot_s: 1.0, sensitivity: 6.0, floor: 0.08, max_gap_s: None, known_cuts: None }
    }
}

impl Sampler {
    /// The `shots` sampler on cuts known beforehand (seconds from the file's start, in any
    /// order): the first frame of each shot, and one every `max_gap_s` inside long shots.
    pub fn cuts(mut cuts_s: Vec<f64>, max_gap_s: Option<f64>) -> Self {
        cuts_s.retain(|c| c.is_finite());
        cuts_s.sort_by(f64::total_cmp);
        Self::Shots(ShotParams { max_gap_s, known_cuts: Some(cuts_s), ..Default::default() })
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

    /// `fps:R`, `uniform:N`, `keyframes`, `shots`, `shots:MIN_SHOT_S` or `cuts:T1,T2,...`
    /// (known cut times in seconds; `cuts:` alone is one shot).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let bad =
            || format!("bad sampler {s:?}: expected fps:R, uniform:N, keyframes, shots[:MIN_SHOT_S] or cuts:T1,T2,...");
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
            ("cuts", Some(list)) => {
                let cuts = list
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| t.parse::<f64>().ok().filter(|t| t.is_finite() && *t >= 0.0))
                    .collect::<Option<Vec<f64>>>()
                    .ok_or_else(bad)?;
                Ok(Self::cuts(cuts, None))
            }
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
            Self::Shots(ShotParams { known_cuts: Some(cuts), .. }) => {
                let list: Vec<String> = cuts.iter().map(f64::to_string).collect();
                write!(f, "cuts:{}", list.join(","))
            }
            Self::Shots(p) if *p == ShotParams::default() => write!(f, "shots"),
            Self::Shots(p) => write!(f, "shots:{}", p.min_shot_s),
        }
    }
}

/// Side of the grey thumbnails the detector compares.
pub(crate) const THUMB_W: usize = 64;
pub(crate) const THUMB_H: usize = 36;
const WINDOW: usize = 48;

/// Where shots start for the `shots` sampler: at the known cuts when there are any, otherwise
/// where a frame-difference detector over small grey thumbnails says (the mean absolute
/// difference from the previous frame against an adaptive threshold over the recent past).
pub(crate) struct ShotDetector {
    params: ShotParams,
    /// Known cuts not yet passed, earliest first (from `params.known_cuts`).
    pending: VecDeque<f64>,
    started: bool,
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
        let mut pending: Vec<f64> = params.known_cuts.iter().flatten().copied().filter(|c| c.is_finite()).collect();
        pending.sort_by(f64::total_cmp);
        Self {
            params,
            pending: pending.into(),
            started: false,
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
        if !self.started {
            self.started = true;
            if self.params.known_cuts.is_none() {
                self.prev = Some(thumb.to_vec());
            }
            // Known cuts at or before the first frame start no second shot.
            self.pass_known_cuts(t);
            self.shot_start = t;
            self.last_emit = t;
            self.last_t = t;
            return (ShotEvent::Start, None);
        }
        self.last_t = t;
        let is_cut =
            if self.params.known_cuts.is_some() { self.pass_known_cuts(t) } else { self.difference_cut(thumb, t) };
        if is_cut {
            let ended = Shot { index: self.shots, start_s: self.shot_start, end_s: t };
            self.shots += 1;
            self.shot_start = t;
            self.last_emit = t;
            return (ShotEvent::Start, Some(ended));
        }
        if let Some(gap) = self.params.max_gap_s
            && t - self.last_emit >= gap
        {
            self.last_emit = t;
            return (ShotEvent::Inside, None);
        }
        (ShotEvent::None, None)
    }

    /// Drop the known cuts at or before `t` (half a millisecond of timestamp rounding
    /// allowed); true when there were any.
    fn pass_known_cuts(&mut self, t: f64) -> bool {
        let mut passed = false;
        while self.pending.front().is_some_and(|&c| c <= t + 5e-4) {
            self.pending.pop_front();
            passed = true;
        }
        passed
    }

    /// The frame-difference detector: is this frame the first of a new shot?
    fn difference_cut(&mut self, thumb: &[u8], t: f64) -> bool {
        let Some(prev) = self.prev.as_mut() else {
            self.prev = Some(thumb.to_vec());
            return false;
        };
        let mad = prev.iter().zip(thumb).map(|(&a, &b)| (i32::from(a) - i32::from(b)).unsigned_abs()).sum::<u32>()
            as f64
            / (255.0 * thumb.len().max(1) as f64);
        prev.copy_from_slice(thumb);

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
        if score > threshold && t - self.shot_start >= self.params.min_shot_s {
            // A new shot starts a new statistic.
            self.recent.clear();
            return true;
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(score);
        false
    }

    /// The shot still open at the end of the stream.
    pub fn finish(&mut self) -> Option<Shot> {
        if !self.started {
            return None;
        }
        let end = self.last_t + self.frame_gap;
        Some(Shot { index: self.shots, start_s: self.shot_start, end_s: end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_samplers() {
        for s in
            ["fps:1", "fps:0.5", "uniform:8", "keyframes", "shots", "shots:2", "cuts:2,4.5", "cuts:0.041667", "cuts:"]
        {
            assert_eq!(s.parse::<Sampler>().map(|p| p.to_string()), Ok(s.to_string()));
        }
        for bad in [
            "fps",
            "fps:0",
            "fps:-1",
            "uniform:0",
            "uniform:x",
            "keyframes:2",
            "scenes",
            "",
            "cuts",
            "cuts:x",
            "cuts:-1",
            "cuts:nan",
        ] {
            assert!(bad.parse::<Sampler>().is_err(), "{bad} should not parse");
        }
        assert_eq!(Sampler::default(), Sampler::Fps(1.0));
        // Known cuts are kept sorted; written out, they read back the same.
        let s = Sampler::cuts(vec![4.5, 2.0, f64::NAN], Some(3.0));
        let Sampler::Shots(p) = &s else { panic!("{s:?}") };
        assert_eq!((p.known_cuts.as_deref(), p.max_gap_s), (Some(&[2.0, 4.5][..]), Some(3.0)));
        assert_eq!(s.to_string(), "cuts:2,4.5");
        assert_eq!("cuts: 4.5, 2".parse::<Sampler>(), Ok(Sampler::cuts(vec![2.0, 4.5], None)));
    }

    #[test]
    fn known_cuts_start_shots_at_the_first_frame_after_them() {
        let mut d = ShotDetector::new(ShotParams {
            max_gap_s: Some(1.0),
            known_cuts: Some(vec![0.0, 1.5, 2.01, 2.02, 10.0]),
            ..Default::default()
        });
        // The pictures do not matter: all frames look the same.
        let grey = vec![128u8; THUMB_W * THUMB_H];
        let (mut starts, mut inside, mut ended) = (vec![], vec![], vec![]);
        for i in 0..96 {
            let (event, shot) = d.push(&grey, i as f64 / 24.0);
            match event {
                ShotEvent::Start => starts.push(i),
                ShotEvent::Inside => inside.push(i),
                ShotEvent::None => {}
            }
            ended.extend(shot.map(|s| (s.index, s.start_s, s.end_s)));
        }
        // The cut at 0 s is the first frame's own; 1.5 s is frame 36; the two cuts between
        // frames 48 (2 s) and 49 start one shot at frame 49; the one after the end, none.
        assert_eq!(starts, vec![0, 36, 49]);
        // One more frame a second inside the last shot: 49 + 24.
        assert_eq!(inside, vec![24, 73]);
        assert_eq!(ended, vec![(0, 0.0, 1.5), (1, 1.5, 49.0 / 24.0)]);
        let last = d.finish().expect("a shot is open");
        assert_eq!((last.index, last.start_s), (2, 49.0 / 24.0));
        assert!((last.end_s - 4.0).abs() < 1e-9, "{last:?}");
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
