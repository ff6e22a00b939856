//! Optimizer apply rate: one `Optimizer::step` over 1M and 10M parameters, beside the
//! memory-bandwidth floor measured in the same run.
//!
//! Every update rule here is memory-bound: a step streams the parameter, the gradient and
//! the state through the CPU once. Two floors are measured for a rule that moves B bytes
//! per parameter (reads plus writes; Adam: p, g, m, v read and p, m, v written, 28 B):
//! - `{rule}_memcpy_{B}B`: a `memcpy` of B / 2 bytes per parameter, which reads and writes B bytes.
//!   Its ordinary stores also read each destination line first (read for ownership), which
//!   an update rule, writing lines it has just read, does not pay: a rule can beat it.
//! - `{rule}_stream_{B}B`: the rule's own access pattern with one addition per array (read the
//!   gradient, read and write the parameter and each state buffer, in one pass): what the
//!   memory system allows for that pattern with next to no arithmetic.
//!
//! Both are measured right before the rule, to see the same load. The rate in parameters
//! per second is reported for all, and the ratios at the end.
//!
//! Adam is also stepped on each narrower SIMD level (`adam_scalar`, `adam_avx2`) and on two
//! threads (`adam_2_threads`); every other row is the widest level on one thread. The
//! PyTorch figure to compare with comes from `scripts/bench/torch_adam.py`.
//!
//! Run: `cargo bench -p downpour-server --bench optimizers` (results are recorded in
//! docs/benchmarks.md; `-- 10M/adam` runs only Adam's rows at 10M). Criterion's own report gives each benchmark's
//! throughput; the closing table uses the fastest per-step time over criterion's samples
//! (warm-up included), for the rules and the floors alike.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use downpour_server::optim::{Execution, OptimizerConfig, SimdLevel};

/// One benchmarked setting.
struct Case {
    /// The benchmark's name.
    label: &'static str,
    /// The job file's `[optimizer]` section.
    config: &'static str,
    /// Bytes read plus bytes written per parameter by one step.
    bytes_per_param: usize,
}

const CASES: [Case; 9] = [
    Case {
        label: "sgd",
        config: r#"name = "sgd""#,
        bytes_per_param: 12,
    },
    Case {
        label: "sgd_nesterov",
        config: "name = \"sgd\"\nmomentum = 0.9\nnesterov = true",
        bytes_per_param: 20,
    },
    Case {
        label: "adagrad",
        config: r#"name = "adagrad""#,
        bytes_per_param: 20,
    },
    Case {
        label: "adadelta",
        config: r#"name = "adadelta""#,
        bytes_per_param: 28,
    },
    Case {
        label: "rmsprop",
        config: r#"name = "rmsprop""#,
        bytes_per_param: 20,
    },
    Case {
        label: "rmsprop_centered_momentum",
        config: "name = \"rmsprop\"\ncentered = true\nmomentum = 0.9",
        bytes_per_param: 36,
    },
    Case {
        label: "adam",
        config: r#"name = "adam""#,
        bytes_per_param: 28,
    },
    Case {
        label: "adam_amsgrad",
        config: "name = \"adam\"\namsgrad = true",
        bytes_per_param: 36,
    },
    Case {
        label: "adamw",
        config: r#"name = "adamw""#,
        bytes_per_param: 28,
    },
];

const SIZES: [(&str, usize); 2] = [("1M", 1_000_000), ("10M", 10_000_000)];

/// Per-step times seen by criterion's calls, by benchmark id.
#[derive(Debug, Default)]
struct StepTimes(BTreeMap<String, Vec<f64>>);

impl StepTimes {
    /// Times `iters` runs of `f` for criterion, and keeps the time per run.
    fn time(&mut self, id: &str, iters: u64, mut f: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        let elapsed = start.elapsed();
        let per_step = elapsed.as_secs_f64() / iters as f64;
        self.0.entry(id.to_owned()).or_default().push(per_step);
        elapsed
    }

    /// The fastest time per step over criterion's samples of benchmark `id`, if it ran:
    /// on a machine shared with other work, the least disturbed measurement.
    fn fastest(&self, id: &str) -> Option<f64> {
        self.0.get(id)?.iter().copied().min_by(f64::total_cmp)
    }
}

/// A deterministic gradient with values of both signs and no zeros.
fn gradient(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 97) as f32 - 48.5) * 1e-3).collect()
}

/// The `memcpy` floor of `case`, measured just before the case itself.
fn bench_memcpy(
    group: &mut BenchmarkGroup<'_, WallTime>,
    times: &mut StepTimes,
    size: &str,
    n: usize,
    case: &Case,
) {
    let label = format!("{}_memcpy_{}B", case.label, case.bytes_per_param);
    let source = vec![1_u8; n * case.bytes_per_param / 2];
    let mut target = vec![0_u8; source.len()];
    let id = format!("{size}/{}/memcpy", case.label);
    group.bench_function(&label, |b| {
        b.iter_custom(|iters| {
            times.time(&id, iters, || {
                target.copy_from_slice(black_box(&source));
                black_box(&mut target);
            })
        });
    });
}

/// Reads `grad` and reads and writes every array once, in one pass: the access pattern of
/// a rule whose parameter and state buffers are `arrays`, with next to no arithmetic.
fn stream_add(grad: &[f32], arrays: &mut [Vec<f32>]) {
    match arrays {
        [p] => {
            for (p, g) in p.iter_mut().zip(grad) {
                *p += g;
            }
        }
        [p, a] => {
            for ((p, a), g) in p.iter_mut().zip(a.iter_mut()).zip(grad) {
                *p += g;
                *a += g;
            }
        }
        [p, a, b] => {
            let state = a.iter_mut().zip(b.iter_mut());
            for ((p, (a, b)), g) in p.iter_mut().zip(state).zip(grad) {
                *p += g;
                *a += g;
                *b += g;
            }
        }
        [p, a, b, c] => {
            let state = a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut());
            for ((p, ((a, b), c)), g) in p.iter_mut().zip(state).zip(grad) {
                *p += g;
                *a += g;
                *b += g;
                *c += g;
            }
        }
        _ => unreachable!("rules read and write 1 to 4 arrays"),
    }
}

/// The access-pattern floor of `case`, measured just before the case itself.
fn bench_stream(
    group: &mut BenchmarkGroup<'_, WallTime>,
    times: &mut StepTimes,
    size: &str,
    n: usize,
    case: &Case,
) {
    let label = format!("{}_stream_{}B", case.label, case.bytes_per_param);
    // 4 bytes of gradient read, 8 bytes read and written per array.
    let arrays_count = (case.bytes_per_param - 4) / 8;
    let grad = gradient(n);
    let mut arrays = vec![vec![0.5_f32; n]; arrays_count];
    let id = format!("{size}/{}/stream", case.label);
    group.bench_function(&label, |b| {
        b.iter_custom(|iters| {
            times.time(&id, iters, || {
                stream_add(black_box(&grad), &mut arrays);
                black_box(&mut arrays);
            })
        });
    });
}

/// How `case` is stepped: on the widest SIMD level and one thread (`label` alone, the
/// figure docs/benchmarks.md compares with PyTorch), or as `execution` says (`label_suffix`).
fn bench_step(
    group: &mut BenchmarkGroup<'_, WallTime>,
    times: &mut StepTimes,
    size: &str,
    n: usize,
    case: &Case,
    (execution, suffix): (Execution, &str),
) {
    let config: OptimizerConfig = toml::from_str(case.config).expect("a valid [optimizer] section");
    let optimizer = config.build().expect("valid hyperparameters");
    let lr = config.lr();
    let grad = gradient(n);
    let mut param = vec![0.5_f32; n];
    let mut state = optimizer.new_state(n);
    let label = format!("{}{suffix}", case.label);
    let id = format!("{size}/{label}");
    group.bench_function(&label, |b| {
        b.iter_custom(|iters| {
            times.time(&id, iters, || {
                optimizer.step_with(execution, lr, &mut param, black_box(&grad), &mut state);
                black_box(&mut param);
            })
        });
    });
}

/// The other ways Adam is stepped, beside the default: each narrower SIMD level on one
/// thread, and the widest on two threads (a tensor split in halves).
fn adam_variants() -> Vec<(Execution, String)> {
    let widest = Execution::single_thread();
    let mut variants: Vec<(Execution, String)> = SimdLevel::available()
        .into_iter()
        .filter(|&simd| simd != widest.simd)
        .map(|simd| {
            let execution = Execution { simd, threads: 1 };
            (execution, format!("_{}", simd.name()))
        })
        .collect();
    let two_threads = Execution {
        threads: 2,
        ..widest
    };
    variants.push((two_threads, "_2_threads".to_owned()));
    variants
}

#[allow(clippy::print_stdout, reason = "a benchmark binary reports on stdout")]
fn print_floor_table(times: &StepTimes, variants: &[(Execution, String)]) {
    // A floor's rate and the rule's fraction of it, as two table cells.
    let floor_cells = |id: String, rate: f64, n: usize| match times.fastest(&id) {
        Some(floor_step) => {
            let floor = n as f64 / floor_step;
            format!("{:.0} M | {:.2}", floor / 1e6, rate / floor)
        }
        None => "not run | -".to_owned(),
    };
    println!();
    println!(
        "| size | optimizer | bytes/param | params/s | memcpy floor, params/s | fraction of memcpy | stream floor, params/s | fraction of stream |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|");
    for (size, n) in SIZES {
        for case in &CASES {
            let mut labels = vec![case.label.to_owned()];
            if case.label == "adam" {
                labels.extend(variants.iter().map(|(_, suffix)| format!("adam{suffix}")));
            }
            for label in labels {
                let Some(step) = times.fastest(&format!("{size}/{label}")) else {
                    continue;
                };
                let rate = n as f64 / step;
                let bytes = case.bytes_per_param;
                println!(
                    "| {size} | {label} | {bytes} | {:.0} M | {} | {} |",
                    rate / 1e6,
                    floor_cells(format!("{size}/{}/memcpy", case.label), rate, n),
                    floor_cells(format!("{size}/{}/stream", case.label), rate, n),
                );
            }
        }
    }
}

fn main() {
    // Short runs: the machine has 2 cores shared with other work. Each rule's floors are
    // measured right before it, so that all three see the same load.
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut times = StepTimes::default();
    let single = Execution::single_thread();
    let variants = adam_variants();
    #[allow(clippy::print_stdout, reason = "a benchmark binary reports on stdout")]
    {
        println!("optimizer SIMD level: {}", single.simd.name());
    }
    for (size, n) in SIZES {
        let mut group = criterion.benchmark_group(format!("optimizer_step_{size}"));
        group.throughput(Throughput::Elements(n as u64));
        for case in &CASES {
            bench_memcpy(&mut group, &mut times, size, n, case);
            bench_stream(&mut group, &mut times, size, n, case);
            bench_step(&mut group, &mut times, size, n, case, (single, ""));
            if case.label == "adam" {
                for (execution, suffix) in &variants {
                    bench_step(&mut group, &mut times, size, n, case, (*execution, suffix));
                }
            }
        }
        group.finish();
    }
    criterion.final_summary();
    print_floor_table(&times, &variants);
}
