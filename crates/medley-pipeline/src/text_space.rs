//! The item's (or segment's) place in the text model's space: every bridge (labels of what is
//! seen, sound events, music tags) and every text (transcript, on-screen text, caption) is a
//! unit vector there; `semantic` is their weighted sum, renormalised, over the ones present.

use crate::config::TextSpaceConfig;

/// What reached the text space for one item or segment, each a unit vector when present.
#[derive(Debug, Default)]
pub(crate) struct TextSpaceParts<'a> {
    pub visual: Option<&'a [f32]>,
    pub sound: Option<&'a [f32]>,
    pub music: Option<&'a [f32]>,
    /// How sure the sound-event model is that music is playing (1 without one): music tags
    /// say nothing about a dog barking, so their bridge counts as much as music is heard.
    pub music_presence: f32,
    pub speech: Option<&'a [f32]>,
    pub ocr: Option<&'a [f32]>,
    pub caption: Option<&'a [f32]>,
}

impl TextSpaceParts<'_> {
    /// The weighted, renormalised sum; `None` when nothing with a weight above 0 is present.
    pub(crate) fn fuse(&self, w: &TextSpaceConfig) -> Option<Vec<f32>> {
        let parts = [
            (self.visual, w.visual),
            (self.sound, w.sound),
            (self.music, w.music * self.music_presence.clamp(0.0, 1.0)),
            (self.speech, w.speech),
            (self.ocr, w.ocr),
            (self.caption, w.caption),
        ];
        let mut sum: Option<Vec<f32>> = None;
        for (v, weight) in parts {
            let Some(v) = v.filter(|_| weight > 0.0) else { continue };
            let acc = sum.get_or_insert_with(|| vec![0.0; v.len()]);
            if acc.len() != v.len() {
                continue;
            }
            acc.iter_mut().zip(v).for_each(|(a, x)| *a += weight * x);
        }
        let mut sum = sum?;
        let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm <= f32::EPSILON {
            return None;
        }
        sum.iter_mut().for_each(|x| *x /= norm);
        Some(sum)
    }
}

/// How sure a sound-event distribution is that music is playing: the probability of the
/// `Music` class, or 1 when the vocabulary has none.
pub(crate) fn music_presence(probabilities: Option<&[f32]>, music_class: Option<usize>) -> f32 {
    match (probabilities, music_class) {
        (Some(p), Some(i)) => p.get(i).copied().unwrap_or(1.0),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuses_what_is_present_by_weight() {
        let w = TextSpaceConfig::default();
        let (x, y) = ([1.0, 0.0], [0.0, 1.0]);
        let only_visual = TextSpaceParts { visual: Some(&x), music_presence: 1.0, ..Default::default() };
        assert_eq!(only_visual.fuse(&w), Some(vec![1.0, 0.0]));
        let both = TextSpaceParts { visual: Some(&x), sound: Some(&y), music_presence: 1.0, ..Default::default() };
        let v = both.fuse(&w).unwrap();
        assert!((v[0] - v[1]).abs() < 1e-6 && (v[0] - 0.70710677).abs() < 1e-6, "{v:?}");
        assert_eq!(TextSpaceParts::default().fuse(&w), None);
    }

    #[test]
    fn music_tags_count_as_much_as_music_is_heard() {
        let w = TextSpaceConfig::default();
        let (x, y) = ([1.0, 0.0], [0.0, 1.0]);
        let no_music = TextSpaceParts { sound: Some(&x), music: Some(&y), music_presence: 0.0, ..Default::default() };
        assert_eq!(no_music.fuse(&w), Some(vec![1.0, 0.0]));
        let off = TextSpaceConfig { visual: 0.0, ..TextSpaceConfig::default() };
        let seen = TextSpaceParts { visual: Some(&x), music_presence: 1.0, ..Default::default() };
        assert_eq!(seen.fuse(&off), None, "a weight of 0 leaves a part out");
        assert_eq!(music_presence(Some(&[0.1, 0.9]), Some(1)), 0.9);
        assert_eq!(music_presence(Some(&[0.1, 0.9]), None), 1.0);
    }
}
