//! The one validation of a typed number, used by the browser (to answer at
//! once) and by the server (which trusts nothing).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{group_digits, Number};

/// The default longest number a user may enter, in digits.
pub const DEFAULT_MAX_DIGITS: usize = 1000;

/// Why a typed number was refused. Each has its own message for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputError {
    /// Nothing but whitespace.
    Empty,
    /// Zero has no Collatz sequence.
    Zero,
    /// A leading `-` or `+`.
    Sign,
    /// A decimal point, as in `1.5`.
    Decimal,
    /// An exponent, as in `1e3`.
    Exponent,
    /// Digit groups, as in `1_000`, `1,000` or `1 000`.
    Separator,
    /// Digits other than ASCII 0–9, such as `١٢` or `１２`.
    NonAsciiDigit,
    /// Anything else that is not a number.
    NotANumber,
    /// More significant digits than allowed.
    TooLong {
        /// The significant digits entered.
        digits: usize,
        /// The most allowed.
        max: usize,
    },
    /// More characters than a field takes, separators included.
    TooWide {
        /// The characters entered.
        chars: usize,
        /// The most allowed.
        max: usize,
    },
    /// A start of a search at or above 2^64 - 1.
    TooLarge,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Empty => f.write_str("Enter a number."),
            InputError::Zero => f.write_str("0 has no Collatz sequence: enter 1 or more."),
            InputError::Sign => {
                f.write_str("Leave out the sign: enter a positive whole number such as 27.")
            }
            InputError::Decimal => f.write_str("Enter a whole number, without a decimal point."),
            InputError::Exponent => {
                f.write_str("Write the number out in full digits, without an exponent.")
            }
            InputError::Separator => {
                f.write_str("Enter the digits without separators (no spaces, commas or _).")
            }
            InputError::NonAsciiDigit => f.write_str("Use the digits 0 to 9 only."),
            InputError::NotANumber => f.write_str("That is not a number: use the digits 0 to 9."),
            InputError::TooWide { chars, max } => write!(
                f,
                "That is {} characters long; the most allowed is {}.",
                group_digits(&chars.to_string()),
                group_digits(&max.to_string())
            ),
            InputError::TooLarge => {
                f.write_str("Enter a start below 18,446,744,073,709,551,615 (2^64 - 1).")
            }
            InputError::TooLong { digits, max } => write!(
                f,
                "That number has {} digits; the most allowed is {}.",
                group_digits(&digits.to_string()),
                group_digits(&max.to_string())
            ),
        }
    }
}

impl std::error::Error for InputError {}

/// Parses what a user typed into a positive whole number.
///
/// Surrounding whitespace is trimmed and leading zeros are allowed; anything
/// else that is not ASCII digits is refused with the reason. Never panics.
pub fn parse_number(text: &str, max_digits: usize) -> Result<Number, InputError> {
    let digits = check_number(text, max_digits)?;
    Number::from_digits(digits).ok_or(InputError::NotANumber)
}

/// The same validation as [`parse_number`], without building the number:
/// returns its significant digits. The browser uses this one, so it needs no
/// big-integer code.
pub fn check_number(text: &str, max_digits: usize) -> Result<&str, InputError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(InputError::Empty);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let significant = text.trim_start_matches('0');
        if significant.is_empty() {
            return Err(InputError::Zero);
        }
        if significant.len() > max_digits {
            return Err(InputError::TooLong {
                digits: significant.len(),
                max: max_digits,
            });
        }
        return Ok(significant);
    }
    Err(classify_non_digits(text))
}

/// Names the most likely intent behind text that is not all ASCII digits.
fn classify_non_digits(text: &str) -> InputError {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, rest) = text.split_at(text.chars().next().map_or(0, char::len_utf8));
    if (first == "-" || first == "+") && !rest.is_empty() {
        return InputError::Sign;
    }
    let is_decimal = |s: &str| {
        s.split_once('.').is_some_and(|(whole, fraction)| {
            (digits(whole) || whole.is_empty())
                && (digits(fraction) || fraction.is_empty())
                && !(whole.is_empty() && fraction.is_empty())
        })
    };
    if let Some((mantissa, exponent)) = text.split_once(['e', 'E']) {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if (digits(mantissa) || is_decimal(mantissa)) && digits(exponent) {
            return InputError::Exponent;
        }
    }
    if is_decimal(text) {
        return InputError::Decimal;
    }
    let is_separator = |c: char| matches!(c, '_' | ',' | '\'' | '.') || c.is_whitespace();
    if text.chars().any(|c| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_digit() || is_separator(c))
    {
        return InputError::Separator;
    }
    if text.chars().all(char::is_numeric) {
        return InputError::NonAsciiDigit;
    }
    InputError::NotANumber
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Number, InputError> {
        parse_number(text, DEFAULT_MAX_DIGITS)
    }

    #[test]
    fn accepts_positive_whole_numbers() {
        assert_eq!(parse("27"), Ok(Number::from(27)));
        assert_eq!(parse("  27\n"), Ok(Number::from(27)));
        assert_eq!(parse("0027"), Ok(Number::from(27)));
        assert_eq!(parse("1"), Ok(Number::ONE));
        let forty = "1234567890123456789012345678901234567890";
        assert_eq!(parse(forty).unwrap().to_string(), forty);
    }

    #[test]
    fn each_rejection_has_its_reason() {
        let cases = [
            ("", InputError::Empty),
            ("   ", InputError::Empty),
            ("0", InputError::Zero),
            ("000", InputError::Zero),
            ("-7", InputError::Sign),
            ("+7", InputError::Sign),
            ("-0", InputError::Sign),
            ("1.5", InputError::Decimal),
            ("1.", InputError::Decimal),
            (".5", InputError::Decimal),
            ("1e3", InputError::Exponent),
            ("1E3", InputError::Exponent),
            ("1.5e-3", InputError::Exponent),
            ("1_000", InputError::Separator),
            ("1,000", InputError::Separator),
            ("1 000", InputError::Separator),
            ("1'000", InputError::Separator),
            ("1.000.000", InputError::Separator),
            ("١٢٣", InputError::NonAsciiDigit),
            ("１２３", InputError::NonAsciiDigit),
            ("abc", InputError::NotANumber),
            ("12abc", InputError::NotANumber),
            ("e", InputError::NotANumber),
            (".", InputError::NotANumber),
            ("-", InputError::NotANumber),
            ("0x1F", InputError::NotANumber),
            ("NaN", InputError::NotANumber),
            ("∞", InputError::NotANumber),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Err(expected.clone()), "{text:?}");
            assert!(!expected.to_string().is_empty());
        }
    }

    #[test]
    fn messages_differ() {
        let errors = [
            InputError::Empty,
            InputError::Zero,
            InputError::Sign,
            InputError::Decimal,
            InputError::Exponent,
            InputError::Separator,
            InputError::NonAsciiDigit,
            InputError::NotANumber,
            InputError::TooLong { digits: 2, max: 1 },
        ];
        let messages: std::collections::HashSet<String> =
            errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), errors.len());
    }

    #[test]
    fn the_digit_limit_counts_significant_digits() {
        let max = "9".repeat(1000);
        assert!(parse(&max).is_ok());
        assert!(parse(&format!("000{max}")).is_ok());
        let over = "9".repeat(1001);
        assert_eq!(
            parse(&over),
            Err(InputError::TooLong {
                digits: 1001,
                max: 1000
            })
        );
        assert_eq!(
            parse(&over).unwrap_err().to_string(),
            "That number has 1,001 digits; the most allowed is 1,000."
        );
        assert_eq!(
            parse_number("123", 2),
            Err(InputError::TooLong { digits: 3, max: 2 })
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_accepts_only_digits(text in "\\PC{0,40}") {
            if let Ok(n) = parse(&text) {
                let trimmed = text.trim().trim_start_matches('0');
                proptest::prop_assert_eq!(n.to_string(), trimmed);
            }
        }

        #[test]
        fn round_trips_any_digit_string(digits in "[1-9][0-9]{0,200}") {
            proptest::prop_assert_eq!(parse(&digits).unwrap().to_string(), digits);
        }
    }
}
