//! Known trajectories, run through the state machine exactly as the server
//! runs them, and a 1,000-digit one checked against independent arithmetic.

use shared::{
    wire::{Command, Status},
    Collatz, Number, Settings,
};

/// Runs `start` to 1 through the machine; returns (steps, peak, values).
fn run(start: &str) -> (u64, String, Vec<String>) {
    let mut machine = Collatz::new(Settings {
        window: usize::MAX,
        window_bytes: usize::MAX,
        max_digits: 20_000,
        ..Settings::default()
    });
    let outcome = machine
        .apply(&Command::SetNumber { text: start.into() })
        .unwrap();
    let mut values = outcome.delta.unwrap().change.appended;
    if let Some(generation) = outcome.start_task {
        while machine.status() == Status::Running {
            values.extend(machine.step(generation).unwrap().change.appended);
        }
    }
    assert_eq!(machine.status(), Status::Finished);
    let run = machine.snapshot().run.unwrap();
    assert_eq!(run.recent.iter().cloned().collect::<Vec<_>>(), values);
    (run.steps, run.peak, values)
}

#[test]
fn small_known_trajectories() {
    let table: [(&str, &[&str]); 6] = [
        ("1", &["1"]),
        ("2", &["2", "1"]),
        ("3", &["3", "10", "5", "16", "8", "4", "2", "1"]),
        ("6", &["6", "3", "10", "5", "16", "8", "4", "2", "1"]),
        (
            "7",
            &[
                "7", "22", "11", "34", "17", "52", "26", "13", "40", "20", "10", "5", "16", "8",
                "4", "2", "1",
            ],
        ),
        (
            "9",
            &[
                "9", "28", "14", "7", "22", "11", "34", "17", "52", "26", "13", "40", "20", "10",
                "5", "16", "8", "4", "2", "1",
            ],
        ),
    ];
    for (start, expected) in table {
        let (steps, _, values) = run(start);
        assert_eq!(values, expected, "trajectory of {start}");
        assert_eq!(steps as usize, expected.len() - 1);
    }
}

#[test]
fn steps_and_peaks_of_famous_starts() {
    // (start, steps to reach 1, peak)
    let table = [
        ("27", 111, "9232"),
        ("97", 118, "9232"),
        ("871", 178, "190996"),
        ("837799", 524, "2974984576"),
    ];
    for (start, steps, peak) in table {
        let (got_steps, got_peak, _) = run(start);
        assert_eq!((got_steps, got_peak.as_str()), (steps, peak), "{start}");
    }
}

#[test]
fn a_power_of_two_halves_straight_down() {
    let start = "1267650600228229401496703205376"; // 2^100
    let (steps, peak, values) = run(start);
    assert_eq!(steps, 100);
    assert_eq!(peak, start);
    assert_eq!(values[1], "633825300114114700748351602688"); // 2^99
}

#[test]
fn crossing_the_machine_word_boundary_stays_exact() {
    let start = "18446744073709551617"; // 2^64 + 1
    let (_, peak, values) = run(start);
    // Odd, so the first step is 3n + 1, computed by hand.
    assert_eq!(values[1], "55340232221128654852");
    assert_eq!(values[2], "27670116110564327426");
    assert!(peak.len() >= 20);
    // Every step obeys the rule in independent decimal arithmetic.
    for pair in values.windows(2) {
        assert_eq!(Decimal::parse(&pair[0]).step().to_string(), pair[1]);
    }
}

#[test]
fn a_thousand_digit_start_matches_independent_arithmetic() {
    // A fixed pseudo-random 1,000-digit number.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let start: String = (0..1000)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let digit = (seed % 10) as u8;
            char::from(b'0' + if i == 0 { digit.max(1) } else { digit })
        })
        .collect();
    let (steps, peak, values) = run(&start);

    let mut n = Decimal::parse(&start);
    let mut expected_peak = n.clone();
    let mut expected_steps = 0u64;
    while !n.is_one() {
        n = n.step();
        expected_steps += 1;
        if n > expected_peak {
            expected_peak = n.clone();
        }
        assert_eq!(values[expected_steps as usize], n.to_string());
    }
    assert_eq!(steps, expected_steps);
    assert_eq!(peak, expected_peak.to_string());
    assert!(steps > 5000, "{steps}");
}

#[test]
fn numbers_parse_back_from_their_text() {
    for text in ["1", "27", "18446744073709551615", "18446744073709551616"] {
        assert_eq!(Number::from_digits(text).unwrap().to_string(), text);
    }
}

/// Schoolbook decimal arithmetic, most significant digit first: slow, but it
/// shares no code with the crate under test.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Decimal {
    /// Compared by (length, digits), which orders numbers without leading zeros.
    len: usize,
    digits: Vec<u8>,
}

impl Decimal {
    fn parse(text: &str) -> Decimal {
        let digits: Vec<u8> = text.bytes().map(|b| b - b'0').collect();
        Decimal {
            len: digits.len(),
            digits,
        }
    }

    fn is_one(&self) -> bool {
        self.digits == [1]
    }

    fn step(&self) -> Decimal {
        let mut out = Vec::with_capacity(self.digits.len() + 1);
        if self.digits.last().unwrap().is_multiple_of(2) {
            let mut remainder = 0;
            for &d in &self.digits {
                let value = remainder * 10 + d;
                out.push(value / 2);
                remainder = value % 2;
            }
        } else {
            let mut carry = 1; // the +1
            for &d in self.digits.iter().rev() {
                let value = d * 3 + carry;
                out.push(value % 10);
                carry = value / 10;
            }
            if carry > 0 {
                out.push(carry);
            }
            out.reverse();
        }
        let first = out.iter().position(|&d| d != 0).unwrap();
        out.drain(..first);
        Decimal {
            len: out.len(),
            digits: out,
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.digits {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
