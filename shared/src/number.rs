//! Exact positive integers of any size, with a machine-word fast path.

use std::{cmp::Ordering, fmt};

use num_bigint::BigUint;
use num_traits::{One, ToPrimitive};

/// A positive whole number, exact at any size.
///
/// Values that fit in a `u64` are kept as one; `3n + 1` that would overflow
/// moves to [`BigUint`], and halving moves back once the value fits again, so
/// the representation is always canonical (equal numbers compare equal).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Number(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// Any value that fits in 64 bits.
    Small(u64),
    /// Only values of 65 bits or more.
    Big(BigUint),
}

impl Number {
    /// The number one, where every trajectory ends.
    pub const ONE: Number = Number(Repr::Small(1));

    /// Parses ASCII decimal digits (leading zeros allowed). Returns `None`
    /// for anything else or for zero; user input goes through
    /// [`crate::input::parse_number`], which says what is wrong.
    pub fn from_digits(digits: &str) -> Option<Number> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number = match digits.parse::<u64>() {
            Ok(small) => Number(Repr::Small(small)),
            Err(_) => Number::from_big(BigUint::parse_bytes(digits.as_bytes(), 10)?),
        };
        (!number.is_zero()).then_some(number)
    }

    /// The Collatz successor: `n / 2` for even `n`, `3n + 1` for odd `n`.
    pub fn step(&mut self) {
        match &mut self.0 {
            Repr::Small(n) if *n % 2 == 0 => *n /= 2,
            Repr::Small(n) => match n.checked_mul(3).and_then(|m| m.checked_add(1)) {
                Some(next) => *n = next,
                None => {
                    let mut big = BigUint::from(*n);
                    big *= 3u32;
                    big += 1u32;
                    self.0 = Repr::Big(big);
                }
            },
            Repr::Big(big) => {
                if big.bit(0) {
                    *big *= 3u32;
                    *big += 1u32;
                } else {
                    *big >>= 1u32;
                    if let Some(small) = big.to_u64() {
                        self.0 = Repr::Small(small);
                    }
                }
            }
        }
    }

    /// True for 1, the end of every known trajectory.
    pub fn is_one(&self) -> bool {
        matches!(self.0, Repr::Small(1))
    }

    fn is_zero(&self) -> bool {
        matches!(self.0, Repr::Small(0))
    }

    /// The number of bits of the binary representation.
    pub fn bits(&self) -> u64 {
        match &self.0 {
            Repr::Small(n) => u64::from(u64::BITS - n.leading_zeros()),
            Repr::Big(big) => big.bits(),
        }
    }

    /// The value as a `u64`, when it fits.
    pub fn to_u64(&self) -> Option<u64> {
        match self.0 {
            Repr::Small(n) => Some(n),
            Repr::Big(_) => None,
        }
    }

    /// A positive `u128` (`None` for zero).
    pub fn from_u128(n: u128) -> Option<Number> {
        match u64::try_from(n) {
            Ok(0) => None,
            Ok(small) => Some(Number(Repr::Small(small))),
            Err(_) => Some(Number(Repr::Big(BigUint::from(n)))),
        }
    }

    /// The value as a `u128`, when it fits.
    pub fn to_u128(&self) -> Option<u128> {
        match &self.0 {
            Repr::Small(n) => Some(u128::from(*n)),
            Repr::Big(big) => big.to_u128(),
        }
    }

    fn from_big(big: BigUint) -> Number {
        match big.to_u64() {
            Some(small) => Number(Repr::Small(small)),
            None => Number(Repr::Big(big)),
        }
    }
}

impl From<u64> for Number {
    /// Panics on zero, which is not a positive number.
    fn from(n: u64) -> Number {
        assert!(n != 0, "a Collatz number is positive");
        Number(Repr::Small(n))
    }
}

impl From<BigUint> for Number {
    /// Panics on zero, which is not a positive number.
    fn from(big: BigUint) -> Number {
        assert!(big >= BigUint::one(), "a Collatz number is positive");
        Number::from_big(big)
    }
}

impl serde::Serialize for Number {
    /// As its decimal digits: JSON numbers lose precision past 2^53.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Number {
    /// From decimal digits; anything else (or zero) is refused.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Number, D::Error> {
        let digits = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Number::from_digits(&digits)
            .ok_or_else(|| serde::de::Error::custom("a positive whole number in decimal digits"))
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Number) -> Ordering {
        match (&self.0, &other.0) {
            (Repr::Small(a), Repr::Small(b)) => a.cmp(b),
            // Canonical form: every Big is larger than every Small.
            (Repr::Small(_), Repr::Big(_)) => Ordering::Less,
            (Repr::Big(_), Repr::Small(_)) => Ordering::Greater,
            (Repr::Big(a), Repr::Big(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Number) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Small(n) => n.fmt(f),
            Repr::Big(big) => big.fmt(f),
        }
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A number's size on a log scale, in thousandths of a bit: about
/// `1000 * log2(n)`, from its decimal digits alone, in integer arithmetic.
///
/// The browser draws the chart from the decimal strings it receives, and the
/// server from the same strings, so both get the same points without a
/// big-integer library in the browser. Monotonic in `n`; within 0.09 bit of
/// the true logarithm, which is far below a pixel.
pub fn magnitude(decimal: &str) -> u32 {
    /// `1000 * log2(10)`, scaled by a further 1000 for precision.
    const MILLI_LOG2_10_X1000: u64 = 3_321_928;
    let digits = decimal.trim_start_matches('0');
    if digits.is_empty() {
        return 0;
    }
    // The leading 19 digits always fit in a u64; the rest only scale.
    let (head, rest) = digits.split_at(digits.len().min(19));
    let lead: u64 = head.parse().unwrap_or(1);
    let whole_bits = u64::from(63 - lead.leading_zeros());
    // Linear interpolation of log2 between powers of two: the 10 bits after
    // the leading one give the fraction.
    let fraction = ((lead << (63 - whole_bits)) >> 53) & 0x3ff;
    let milli = whole_bits * 1000 + fraction * 1000 / 1024;
    let scale = rest.len() as u64 * MILLI_LOG2_10_X1000 / 1000;
    u32::try_from(milli + scale).unwrap_or(u32::MAX)
}

/// Decimal digits in groups of three, for people: `9232` as `9,232`.
pub fn group_digits(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_the_machine_word_and_back() {
        // 2^64 - 1 is odd: 3n + 1 overflows u64 and must stay exact.
        let mut n = Number::from(u64::MAX);
        n.step();
        assert_eq!(n.to_string(), "55340232221128654846");
        assert_eq!(n.to_u64(), None);
        // Halving comes back under 2^64 and to the small form.
        let mut halved = Number::from_digits("36893488147419103230").unwrap(); // 2 * (2^64 - 1)
        halved.step();
        assert_eq!(halved, Number::from(u64::MAX));
        assert_eq!(halved.to_u64(), Some(u64::MAX));
    }

    #[test]
    fn ordering_spans_both_forms() {
        let small = Number::from(u64::MAX);
        let big = Number::from_digits("18446744073709551616").unwrap();
        assert!(small < big);
        assert_eq!(big.bits(), 65);
        assert_eq!(small.bits(), 64);
    }

    #[test]
    fn from_digits_refuses_zero_and_non_digits() {
        assert_eq!(Number::from_digits("0"), None);
        assert_eq!(Number::from_digits("000"), None);
        assert_eq!(Number::from_digits(""), None);
        assert_eq!(Number::from_digits("12a"), None);
        assert_eq!(Number::from_digits("007"), Some(Number::from(7)));
    }

    #[test]
    fn grouping() {
        assert_eq!(group_digits("0"), "0");
        assert_eq!(group_digits("999"), "999");
        assert_eq!(group_digits("1000"), "1,000");
        assert_eq!(group_digits("9232"), "9,232");
        assert_eq!(group_digits("1234567"), "1,234,567");
    }

    #[test]
    fn magnitude_follows_log2() {
        assert_eq!(magnitude("1"), 0);
        assert_eq!(magnitude("2"), 1000);
        assert_eq!(magnitude("1024"), 10_000);
        assert_eq!(magnitude("3"), 1500); // log2 3 = 1.585, interpolated 1.5
                                          // 10^30 is 99.658 bits; the stated accuracy is 0.09 bit.
        let m = magnitude(&format!("1{}", "0".repeat(30)));
        assert!((99_568..=99_748).contains(&m), "{m}");
        // Monotonic over a range crossing the 19-digit head.
        let mut last = 0;
        for digits in 1..60 {
            for lead in ["1", "5", "9"] {
                let m = magnitude(&format!("{lead}{}", "0".repeat(digits)));
                assert!(m > last, "{lead}e{digits}: {m} <= {last}");
                last = m;
            }
        }
    }
}
