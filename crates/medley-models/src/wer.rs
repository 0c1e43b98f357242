//! Word error rate: how far a transcript is from a reference, as the speech tests and
//! measurements score Whisper.

/// The words of `text` as they are scored: lower case, hyphens split, punctuation dropped
/// (apostrophes kept), "Mr" spelled out as Whisper writes it.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('-', " ")
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || *c == '\'')
        .collect::<String>()
        .split_whitespace()
        .map(|w| if w == "mr" { "mister".to_string() } else { w.to_string() })
        .collect()
}

/// Word substitutions, insertions and deletions between `reference` and `hypothesis`
/// (Levenshtein distance over words).
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, x) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, y) in hypothesis.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

/// [`word_errors`] per reference word.
pub fn word_error_rate(reference: &[String], hypothesis: &[String]) -> f32 {
    word_errors(reference, hypothesis) as f32 / reference.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::{word_error_rate, word_errors, words};

    #[test]
    fn scoring_normalises_then_counts_word_edits() {
        assert_eq!(words("Mr. Dashwood's well-known house!"), ["mister", "dashwood's", "well", "known", "house"]);
        let (a, b) = (words("the cat sat on the mat"), words("the cat sat on a mat today"));
        assert_eq!(word_errors(&a, &b), 2, "one substitution, one insertion");
        assert!((word_error_rate(&a, &b) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(word_errors(&a, &[]), 6);
    }
}
