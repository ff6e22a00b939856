//! The update rules on the widest SIMD the CPU offers, chosen at run time.
//!
//! Each rule writes its per-element update once, generic over [`Lanes`]: a vector of
//! `LANES` f32s with the arithmetic the rules use. Three implementations exist: `f32`
//! itself (the scalar fallback and every tail), `F32x8` (AVX2 and FMA) and `F32x16`
//! (AVX-512F). [`Sweep`] is one step over a tensor; [`run`] picks the vector type for the
//! [`SimdLevel`] asked for and walks the tensor in one fused pass: a main loop of whole
//! vectors, then the tail one element at a time through the same rule.
//!
//! The binary stays portable (no `target-cpu=native`): the vector loops are compiled into
//! functions with `#[target_feature]`, and [`SimdLevel::detected`] asks the CPU once which
//! of them may run. Every operation the rules use (`+ − × ÷`, `sqrt`, fused multiply-add,
//! `max`) is correctly rounded in IEEE 754 at every width, so all levels give the same
//! bits: the tail and the scalar fallback agree exactly with the vector loop.
//!
//! A tensor of at least [`PARALLEL_MIN_LEN`] elements may be split in two halves stepped
//! by two threads ([`Execution::threads`]).

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::OnceLock;

/// A vector of [`Lanes::LANES`] f32 lanes with the arithmetic the update rules use.
///
/// Every operation is element-wise and correctly rounded, like the f32 operation it names.
pub(crate) trait Lanes:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// How many f32s one vector holds.
    const LANES: usize;
    /// Every lane `x`.
    fn splat(x: f32) -> Self;
    /// Elements `at..at + LANES` of `from`.
    fn load(from: &[f32], at: usize) -> Self;
    /// Writes the lanes to elements `at..at + LANES` of `to`.
    fn store(self, to: &mut [f32], at: usize);
    /// The square root of each lane.
    fn sqrt(self) -> Self;
    /// `self × mul + add` with one rounding (a fused multiply-add).
    fn mul_add(self, mul: Self, add: Self) -> Self;
    /// `self` where `self > other`, else `other`: a NaN `other` wins, as in `torch.maximum`.
    fn max_or_other(self, other: Self) -> Self;
}

impl Lanes for f32 {
    const LANES: usize = 1;

    #[inline(always)]
    fn splat(x: f32) -> Self {
        x
    }

    #[inline(always)]
    fn load(from: &[f32], at: usize) -> Self {
        from[at]
    }

    #[inline(always)]
    fn store(self, to: &mut [f32], at: usize) {
        to[at] = self;
    }

    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }

    #[inline(always)]
    fn mul_add(self, mul: Self, add: Self) -> Self {
        f32::mul_add(self, mul, add)
    }

    #[inline(always)]
    fn max_or_other(self, other: Self) -> Self {
        if self > other { self } else { other }
    }
}

/// Which instruction set the vector loop uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// One element at a time (any CPU; with hardware fused multiply-adds where the CPU
    /// has FMA, else with the C library's exact software `fmaf`, several times slower).
    Scalar,
    /// 8 lanes: AVX2 with FMA.
    Avx2,
    /// 16 lanes: AVX-512F.
    Avx512,
}

impl SimdLevel {
    /// The widest level this CPU supports, asked once and remembered.
    #[must_use]
    pub fn detected() -> Self {
        static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let level = Self::available().last().copied().unwrap_or(Self::Scalar);
            tracing::debug!(simd = level.name(), "optimizer SIMD level");
            level
        })
    }

    /// Every level this CPU can run, narrowest first (always starts with `Scalar`).
    #[must_use]
    pub fn available() -> Vec<Self> {
        [Self::Scalar, Self::Avx2, Self::Avx512]
            .into_iter()
            .filter(|level| level.is_available())
            .collect()
    }

    /// Whether this CPU has the instructions of this level.
    #[must_use]
    pub fn is_available(self) -> bool {
        match self {
            Self::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The level's name in reports: `scalar`, `avx2` or `avx512`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }
}

/// The smallest tensor that [`Execution::threads`] = 2 splits between two threads.
///
/// Starting a scoped thread costs tens of microseconds; a step over 2^20 Adam elements
/// takes about a millisecond on one thread. Below this, one thread steps the whole tensor.
pub const PARALLEL_MIN_LEN: usize = 1 << 20;

/// How a step runs: the instruction set, and how many threads share a large tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    /// The vector loop; must be one of [`SimdLevel::available`].
    pub simd: SimdLevel,
    /// 1, or 2 to split tensors of at least [`PARALLEL_MIN_LEN`] elements into two
    /// halves stepped at once (every rule is element-wise, so the halves are independent).
    pub threads: usize,
}

impl Execution {
    /// The widest SIMD level on one thread.
    #[must_use]
    pub fn single_thread() -> Self {
        Self {
            simd: SimdLevel::detected(),
            threads: 1,
        }
    }
}

impl Default for Execution {
    /// The widest SIMD level; one thread (see docs/optimizers.md for why).
    fn default() -> Self {
        Self::single_thread()
    }
}

/// One step of one rule over one tensor: the borrowed parameter, gradient and state
/// buffers, all of [`Sweep::len`] elements, and the step's scalars.
pub(crate) trait Sweep: Send + Sized {
    /// The number of elements.
    fn len(&self) -> usize;
    /// The sweeps of elements `..mid` and `mid..`.
    fn split_at(self, mid: usize) -> (Self, Self);
    /// Updates elements `at..at + L::LANES`.
    fn update<L: Lanes>(&mut self, at: usize);
}

/// Splits an optional buffer as [`slice::split_at_mut`] does (for [`Sweep::split_at`]).
pub(crate) fn split_optional(
    buffer: Option<&mut [f32]>,
    mid: usize,
) -> (Option<&mut [f32]>, Option<&mut [f32]>) {
    match buffer {
        Some(buffer) => {
            let (first, second) = buffer.split_at_mut(mid);
            (Some(first), Some(second))
        }
        None => (None, None),
    }
}

/// Runs `sweep` over all its elements as `execution` says.
///
/// # Panics
/// When `execution.simd` is not one of [`SimdLevel::available`].
pub(crate) fn run<S: Sweep>(execution: Execution, sweep: S) {
    let len = sweep.len();
    if execution.threads >= 2 && len >= PARALLEL_MIN_LEN {
        // Split on a multiple of 16 lanes so that neither half has a tail of its own
        // before its end.
        let mid = (len / 2) & !15;
        let (first, second) = sweep.split_at(mid);
        std::thread::scope(|scope| {
            scope.spawn(|| run_on_one_thread(execution.simd, first));
            run_on_one_thread(execution.simd, second);
        });
    } else {
        run_on_one_thread(execution.simd, sweep);
    }
}

/// Runs `sweep` on the calling thread with the vector loop of `simd`.
fn run_on_one_thread<S: Sweep>(simd: SimdLevel, mut sweep: S) {
    assert!(
        simd.is_available(),
        "this CPU cannot run the {} optimizer loop",
        simd.name()
    );
    match simd {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Scalar if is_x86_feature_detected!("fma") => {
            // SAFETY: the CPU has FMA, just checked.
            unsafe { x86::sweep_scalar_fma(&mut sweep) }
        }
        // Without hardware FMA, `f32::mul_add` is glibc's exact but slow software `fmaf`.
        SimdLevel::Scalar => sweep_all::<f32, S>(&mut sweep),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA: `simd.is_available()`.
        SimdLevel::Avx2 => unsafe { x86::sweep_avx2(&mut sweep) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F: `simd.is_available()`.
        SimdLevel::Avx512 => unsafe { x86::sweep_avx512(&mut sweep) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar level is available off x86-64"),
    }
}

/// The fused pass: whole vectors of `L`, two per iteration, then the tail element by element.
#[inline(always)]
fn sweep_all<L: Lanes, S: Sweep>(sweep: &mut S) {
    let len = sweep.len();
    let pairs_end = len - len % (2 * L::LANES);
    let vectors_end = len - len % L::LANES;
    let mut at = 0;
    while at < pairs_end {
        sweep.update::<L>(at);
        sweep.update::<L>(at + L::LANES);
        at += 2 * L::LANES;
    }
    while at < vectors_end {
        sweep.update::<L>(at);
        at += L::LANES;
    }
    while at < len {
        sweep.update::<f32>(at);
        at += 1;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX2 and AVX-512 vector types, and the loops compiled for them.
    //!
    //! Soundness: `F32x8` and `F32x16` are private to this module, and their values are
    //! made only inside `sweep_avx2` and `sweep_avx512`, which [`super::run`] calls only
    //! when the CPU has the features. Their methods call the intrinsics without a
    //! `#[target_feature]` of their own so that they inline into those loops.

    use std::arch::x86_64::{
        __m256, __m512, _mm256_add_ps, _mm256_div_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_max_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_sqrt_ps, _mm256_storeu_ps,
        _mm256_sub_ps, _mm256_xor_ps, _mm512_add_ps, _mm512_castps_si512, _mm512_castsi512_ps,
        _mm512_div_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_max_ps, _mm512_mul_ps,
        _mm512_set1_epi32, _mm512_set1_ps, _mm512_sqrt_ps, _mm512_storeu_ps, _mm512_sub_ps,
        _mm512_xor_si512,
    };
    use std::ops::{Add, Div, Mul, Neg, Sub};

    use super::{Lanes, Sweep, sweep_all};

    /// Steps `sweep` one element at a time, with hardware fused multiply-adds.
    ///
    /// # Safety
    /// The CPU must have FMA.
    #[target_feature(enable = "fma")]
    pub(super) unsafe fn sweep_scalar_fma<S: Sweep>(sweep: &mut S) {
        sweep_all::<f32, S>(sweep);
    }

    /// Steps `sweep` with 8-lane vectors.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sweep_avx2<S: Sweep>(sweep: &mut S) {
        sweep_all::<F32x8, S>(sweep);
    }

    /// Steps `sweep` with 16-lane vectors.
    ///
    /// # Safety
    /// The CPU must have AVX-512F (which implies AVX2 and FMA).
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn sweep_avx512<S: Sweep>(sweep: &mut S) {
        sweep_all::<F32x16, S>(sweep);
    }

    /// Eight f32 lanes in an AVX register.
    #[derive(Debug, Clone, Copy)]
    struct F32x8(__m256);

    /// Sixteen f32 lanes in an AVX-512 register.
    #[derive(Debug, Clone, Copy)]
    struct F32x16(__m512);

    /// Implements an arithmetic operator trait with a two-operand intrinsic.
    macro_rules! binary_op {
        ($vector:ident, $op:ident, $method:ident, $intrinsic:ident) => {
            impl $op for $vector {
                type Output = Self;
                #[inline(always)]
                fn $method(self, other: Self) -> Self {
                    // SAFETY: a value of this type exists only where the CPU has its
                    // features (see the module's documentation).
                    Self(unsafe { $intrinsic(self.0, other.0) })
                }
            }
        };
    }

    binary_op!(F32x8, Add, add, _mm256_add_ps);
    binary_op!(F32x8, Sub, sub, _mm256_sub_ps);
    binary_op!(F32x8, Mul, mul, _mm256_mul_ps);
    binary_op!(F32x8, Div, div, _mm256_div_ps);
    binary_op!(F32x16, Add, add, _mm512_add_ps);
    binary_op!(F32x16, Sub, sub, _mm512_sub_ps);
    binary_op!(F32x16, Mul, mul, _mm512_mul_ps);
    binary_op!(F32x16, Div, div, _mm512_div_ps);

    impl Neg for F32x8 {
        type Output = Self;
        #[inline(always)]
        fn neg(self) -> Self {
            // SAFETY: as in `binary_op!`. Flipping the sign bit is f32 negation.
            Self(unsafe { _mm256_xor_ps(self.0, _mm256_set1_ps(-0.0)) })
        }
    }

    impl Neg for F32x16 {
        type Output = Self;
        #[inline(always)]
        fn neg(self) -> Self {
            // SAFETY: as in `binary_op!`. Flipping the sign bit is f32 negation (an
            // integer xor: the float xor needs AVX-512DQ).
            Self(unsafe {
                _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(self.0),
                    _mm512_set1_epi32(i32::MIN),
                ))
            })
        }
    }

    impl Lanes for F32x8 {
        const LANES: usize = 8;

        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: as in `binary_op!`.
            Self(unsafe { _mm256_set1_ps(x) })
        }

        #[inline(always)]
        fn load(from: &[f32], at: usize) -> Self {
            let lanes = &from[at..at + Self::LANES];
            // SAFETY: `lanes` holds 8 f32s; the load is unaligned. Features as in `binary_op!`.
            Self(unsafe { _mm256_loadu_ps(lanes.as_ptr()) })
        }

        #[inline(always)]
        fn store(self, to: &mut [f32], at: usize) {
            let lanes = &mut to[at..at + Self::LANES];
            // SAFETY: `lanes` holds 8 f32s; the store is unaligned. Features as in `binary_op!`.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), self.0) }
        }

        #[inline(always)]
        fn sqrt(self) -> Self {
            // SAFETY: as in `binary_op!`.
            Self(unsafe { _mm256_sqrt_ps(self.0) })
        }

        #[inline(always)]
        fn mul_add(self, mul: Self, add: Self) -> Self {
            // SAFETY: as in `binary_op!`.
            Self(unsafe { _mm256_fmadd_ps(self.0, mul.0, add.0) })
        }

        #[inline(always)]
        fn max_or_other(self, other: Self) -> Self {
            // SAFETY: as in `binary_op!`. `maxps a, b` is `a > b ? a : b` per lane.
            Self(unsafe { _mm256_max_ps(self.0, other.0) })
        }
    }

    impl Lanes for F32x16 {
        const LANES: usize = 16;

        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: as in `binary_op!`.
            Self(unsafe { _mm512_set1_ps(x) })
        }

        #[inline(always)]
        fn load(from: &[f32], at: usize) -> Self {
            let lanes = &from[at..at + Self::LANES];
            // SAFETY: `lanes` holds 16 f32s; the load is unaligned. Features as in `binary_op!`.
            Self(unsafe { _mm512_loadu_ps(lanes.as_ptr()) })
        }

        #[inline(always)]
        fn store(self, to: &mut [f32], at: usize) {
            let lanes = &mut to[at..at + Self::LANES];
            // SAFETY: `lanes` holds 16 f32s; the store is unaligned. Features as in `binary_op!`.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), self.0) }
        }

        #[inline(always)]
        fn sqrt(self) -> Self {
            // SAFETY: as in `binary_op!`.
            Self(unsafe { _mm512_sqrt_ps(self.0) })
        }

        #[inline(always)]
        fn mul_add(self, mul: Self, add: Self) -> Self {
            // SAFETY: as in `binary_op!`.
            Self(unsafe { _mm512_fmadd_ps(self.0, mul.0, add.0) })
        }

        #[inline(always)]
        fn max_or_other(self, other: Self) -> Self {
            // SAFETY: as in `binary_op!`. `vmaxps a, b` is `a > b ? a : b` per lane.
            Self(unsafe { _mm512_max_ps(self.0, other.0) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Optimizer, OptimizerConfig, ParamState};

    /// One setting of every rule and of every optional buffer.
    const CONFIGS: [&str; 10] = [
        r#"name = "sgd""#,
        "name = \"sgd\"\nmomentum = 0.9\nnesterov = true\nweight_decay = 0.1",
        "name = \"sgd\"\nmomentum = 0.5\ndampening = 0.3\nmaximize = true",
        "name = \"adagrad\"\nlr_decay = 0.1\nweight_decay = 0.2",
        "name = \"adadelta\"\nweight_decay = 0.1\nmaximize = true",
        r#"name = "rmsprop""#,
        "name = \"rmsprop\"\ncentered = true\nmomentum = 0.9\nweight_decay = 0.1",
        "name = \"adam\"\namsgrad = true\nweight_decay = 0.1\nmaximize = true",
        r#"name = "adam""#,
        "name = \"adamw\"\namsgrad = true",
    ];

    /// Values of both signs and many magnitudes, one exact zero, from a fixed seed.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..len)
            .map(|i| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let unit = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                if i == 5 {
                    0.0
                } else {
                    unit * 10f32.powi((i % 7) as i32 - 3)
                }
            })
            .collect()
    }

    /// `steps` steps of `config` from the same start, on `execution`: the parameter and state.
    fn run_steps(config: &str, execution: Execution, len: usize) -> (Vec<f32>, ParamState) {
        let config: OptimizerConfig = toml::from_str(config).unwrap();
        let optimizer: Optimizer = config.build().unwrap();
        let mut param = values(len, 1);
        let mut state = optimizer.new_state(len);
        for step in 0..3 {
            let grad = values(len, 10 + step);
            optimizer.step_with(execution, 0.01, &mut param, &grad, &mut state);
        }
        (param, state)
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    fn assert_same_bits(what: &str, a: &(Vec<f32>, ParamState), b: &(Vec<f32>, ParamState)) {
        assert_eq!(bits(&a.0), bits(&b.0), "{what}: param");
        for ((name, x), (_, y)) in a.1.buffers().iter().zip(b.1.buffers()) {
            assert_eq!(bits(x), bits(y), "{what}: {name}");
        }
        assert_eq!(a.1.step(), b.1.step(), "{what}: step");
    }

    #[test]
    fn every_level_gives_the_scalar_bits_main_loop_and_tail_alike() {
        // 4 pairs of 16 lanes, one more vector of 8 and a tail of 5 at AVX2; at AVX-512
        // 4 vectors and a tail of 13.
        let len = 16 * 4 + 13;
        let scalar = Execution {
            simd: SimdLevel::Scalar,
            threads: 1,
        };
        for config in CONFIGS {
            let reference = run_steps(config, scalar, len);
            assert!(reference.0.iter().all(|p| p.is_finite()), "{config}");
            for simd in SimdLevel::available() {
                let ours = run_steps(config, Execution { simd, threads: 1 }, len);
                assert_same_bits(&format!("{config} at {}", simd.name()), &reference, &ours);
            }
        }
    }

    #[test]
    fn two_threads_give_the_bits_of_one() {
        let len = PARALLEL_MIN_LEN + 37;
        for config in [CONFIGS[1], CONFIGS[6], CONFIGS[7]] {
            let one = run_steps(config, Execution::single_thread(), len);
            let two = Execution {
                threads: 2,
                ..Execution::single_thread()
            };
            assert_same_bits(config, &one, &run_steps(config, two, len));
        }
    }

    #[test]
    fn levels_are_listed_narrowest_first_and_the_widest_is_detected() {
        let levels = SimdLevel::available();
        assert_eq!(levels[0], SimdLevel::Scalar);
        assert!(levels.windows(2).all(|w| w[0] < w[1]), "{levels:?}");
        assert_eq!(levels.last(), Some(&SimdLevel::detected()));
        assert!(levels.iter().all(|level| level.is_available()));
    }

    #[test]
    fn a_vector_maximum_lets_a_nan_second_moment_win() {
        let config = "name = \"adam\"\namsgrad = true";
        let optimizer = toml::from_str::<OptimizerConfig>(config)
            .unwrap()
            .build()
            .unwrap();
        let len = 16 * 2 + 3;
        for simd in SimdLevel::available() {
            let mut state = optimizer.new_state(len);
            let mut param = vec![1.0; len];
            let execution = Execution { simd, threads: 1 };
            optimizer.step_with(execution, 0.1, &mut param, &vec![1.0; len], &mut state);
            let mut grad = vec![0.0; len];
            grad[3] = f32::NAN;
            grad[len - 1] = f32::NAN;
            optimizer.step_with(execution, 0.1, &mut param, &grad, &mut state);
            let ParamState::Adam(adam) = &state else {
                panic!("Adam's state")
            };
            let max = adam.max_exp_avg_sq.as_ref().unwrap();
            let nan_at: Vec<usize> = (0..len).filter(|&i| max[i].is_nan()).collect();
            assert_eq!(nan_at, [3, len - 1], "{}", simd.name());
            assert!((max[0] - 0.001).abs() < 1e-9, "{}: {}", simd.name(), max[0]);
        }
    }
}
