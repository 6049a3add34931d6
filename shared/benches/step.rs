//! The step engine: single steps at several sizes, and whole trajectories
//! through the state machine as the server runs them.
//!
//! `cargo bench -p shared` (or `make bench`); figures in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared::{
    wire::{Command, Status},
    Collatz, Number, Settings,
};

/// A number of `digits` digits with an odd last digit, so stepping it
/// alternates between the multiply and the shift paths.
fn number_of(digits: usize) -> Number {
    let text: String = (0..digits)
        .map(|i| char::from(b'1' + (i * 7 % 9) as u8))
        .collect();
    Number::from_digits(&text).unwrap()
}

/// Steps of one value, without turning them into text.
fn single_steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("step");
    // Machine words: 837799's trajectory stays under 2^32.
    group.throughput(Throughput::Elements(524));
    group.bench_function("u64: 837799 to 1", |b| {
        b.iter(|| {
            let mut n = Number::from(black_box(837_799));
            while !n.is_one() {
                n.step();
            }
            n
        })
    });
    for digits in [20, 100, 1000, 10_000] {
        let start = number_of(digits);
        group.throughput(Throughput::Elements(100));
        group.bench_with_input(
            BenchmarkId::new("big, 100 steps", digits),
            &start,
            |b, start| {
                b.iter_batched(
                    || start.clone(),
                    |mut n| {
                        for _ in 0..100 {
                            n.step();
                        }
                        n
                    },
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

/// What the server does per step: step, decimal text, profile, window.
fn machine_steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("trajectory");
    let starts = [
        ("27", "27".to_owned(), 111u64),
        ("837799", "837799".to_owned(), 524),
        ("2^1000-1", two_to_the_1000_minus_1(), 12_157),
    ];
    for (name, start, steps) in starts {
        group.throughput(Throughput::Elements(steps));
        group.bench_with_input(BenchmarkId::new("machine", name), &start, |b, start| {
            b.iter(|| {
                let mut machine = Collatz::new(Settings::default());
                let outcome = machine
                    .apply(&Command::SetNumber {
                        text: start.clone(),
                    })
                    .unwrap();
                let generation = outcome.start_task.unwrap();
                while machine.status() == Status::Running {
                    black_box(machine.step(generation).unwrap());
                }
                machine.version()
            })
        });
    }
    group.finish();
}

fn two_to_the_1000_minus_1() -> String {
    // 2^1000 - 1 in decimal, by repeated doubling of a digit vector.
    let mut digits = vec![1u8];
    for _ in 0..1000 {
        let mut carry = 0;
        for d in digits.iter_mut() {
            let v = *d * 2 + carry;
            *d = v % 10;
            carry = v / 10;
        }
        if carry > 0 {
            digits.push(carry);
        }
    }
    digits[0] -= 1; // 2^1000 ends in 6: no borrow
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

criterion_group!(benches, single_steps, machine_steps);
criterion_main!(benches);
