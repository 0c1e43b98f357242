//! Numerals spelled out for the text model: on-screen text often is a lone number ("7", a
//! chapter card "3", a score "21"), and a small sentence encoder puts "7" far from "seven" and
//! "the number seven", which is how people ask for it.

use std::borrow::Cow;

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

/// `n` (below 1000) in English words: 7 "seven", 42 "forty-two", 305 "three hundred five".
fn words(n: u32) -> String {
    match n {
        0..=19 => ONES[n as usize].to_string(),
        20..=99 => match n % 10 {
            0 => TENS[(n / 10) as usize].to_string(),
            r => format!("{}-{}", TENS[(n / 10) as usize], ONES[r as usize]),
        },
        _ => match n % 100 {
            0 => format!("{} hundred", ONES[(n / 100) as usize]),
            r => format!("{} hundred {}", ONES[(n / 100) as usize], words(r)),
        },
    }
}

/// `text` with each whole number below 1000 followed by its words ("Level 3" becomes "Level 3
/// three"). Longer numbers (years, prices, codes) are left as they are: spelled, they would
/// outweigh the words around them.
pub(crate) fn with_numbers_spelled(text: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut changed = false;
    for piece in text.split_inclusive(char::is_whitespace) {
        let token = piece.trim_end();
        out.push_str(token);
        let digits = token.trim_matches(|c: char| c.is_ascii_punctuation());
        if !digits.is_empty() && digits.len() <= 3 && digits.bytes().all(|b| b.is_ascii_digit()) {
            // Three ASCII digits at most: the parse cannot fail.
            if let Ok(n) = digits.parse::<u32>() {
                out.push(' ');
                out.push_str(&words(n));
                changed = true;
            }
        }
        out.push_str(&piece[token.len()..]);
    }
    if changed { Cow::Owned(out) } else { Cow::Borrowed(text) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_below_a_thousand_get_their_words() {
        assert_eq!(with_numbers_spelled("7"), "7 seven");
        assert_eq!(with_numbers_spelled("Level 3!"), "Level 3! three");
        assert_eq!(with_numbers_spelled("16"), "16 sixteen");
        assert_eq!(with_numbers_spelled("40"), "40 forty");
        assert_eq!(with_numbers_spelled("(42)"), "(42) forty-two");
        assert_eq!(with_numbers_spelled("305"), "305 three hundred five");
        assert_eq!(with_numbers_spelled("900"), "900 nine hundred");
        assert_eq!(with_numbers_spelled("7\nTHE  END 2"), "7 seven\nTHE  END 2 two");
    }

    #[test]
    fn other_text_is_left_alone() {
        assert!(matches!(with_numbers_spelled("THE END"), Cow::Borrowed("THE END")));
        assert_eq!(with_numbers_spelled("1918 and 3.5 and A4"), "1918 and 3.5 and A4");
    }
}
