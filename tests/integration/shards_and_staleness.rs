//! Several server shards and the SSP bound, through real processes.

use crate::support::{Run, bits, train};

/// Requires that no gradient of `run` was staler than `bound` steps, and that it learned.
fn assert_step_staleness_within(run: &Run, bound: u64) {
    let s = &run.report.step_staleness;
    assert!(
        s.max <= bound,
        "max step staleness {} > {bound}: {:?}",
        s.max,
        s.histogram
    );
    assert!(s.count > 0);
    assert!(run.accuracy() > 0.9, "accuracy {}", run.accuracy());
}

#[test]
fn one_two_or_three_server_shards_give_the_same_accuracy_for_1_to_4_workers() {
    for workers in ["1", "2", "3", "4"] {
        let runs: Vec<_> = ["1", "2", "3"]
            .iter()
            .map(|servers| train(&["--workers", workers, "--servers", servers, "--mode", "sync"]))
            .collect();
        let acc: Vec<f64> = runs.iter().map(|r| r.accuracy()).collect();
        assert!(acc[0] >= 0.96, "{workers} workers: accuracy {}", acc[0]);
        assert_eq!(acc[0], acc[1], "{workers} workers, 1 vs 2 servers");
        assert_eq!(acc[0], acc[2], "{workers} workers, 1 vs 3 servers");
        assert_eq!(runs[2].report.shards.len(), 3);
        if workers == "4" {
            // Sync results do not depend on the number of shards, to the bit.
            assert_eq!(bits(&runs[0].weights()), bits(&runs[2].weights()));
            let shards = &runs[2].report.shards;
            let total: usize = shards.iter().map(|s| s.values).sum();
            assert_eq!(
                total, runs[0].report.shards[0].values,
                "the shards own the whole model"
            );
            for s in shards {
                assert!(
                    s.values <= total.div_ceil(3) + 128,
                    "shard {} owns {} of {total}",
                    s.index,
                    s.values
                );
                assert!(
                    s.bytes_received > 0 && s.bytes_sent > 0,
                    "shard {} served no traffic",
                    s.index
                );
                assert_eq!(s.pushes, shards[0].pushes, "every shard sees every push");
            }
        }
    }
}

#[test]
fn ssp_with_a_bound_of_2_and_a_3x_slower_worker_stays_within_the_bound() {
    // Worker 0 sleeps 4 ms per step; a step of the others takes about 1-2 ms here.
    let run = train(&[
        "--workers",
        "3",
        "--mode",
        "ssp",
        "--staleness",
        "2",
        "--epochs",
        "8",
        "--slow-worker",
        "0:4",
    ]);
    assert_step_staleness_within(&run, 2);
}

#[test]
fn async_shows_the_slow_worker_as_staler() {
    let run = train(&[
        "--workers",
        "3",
        "--mode",
        "async",
        "--epochs",
        "6",
        "--slow-worker",
        "0:25",
    ]);
    // `--slow-worker 0` slows the process named worker-0, whatever id it registered with.
    let slow = run
        .report
        .workers
        .iter()
        .find(|w| w.name == "worker-0")
        .unwrap();
    let fast = run
        .report
        .workers
        .iter()
        .find(|w| w.name == "worker-1")
        .unwrap();
    let mean = |w: &downpour_core::status::WorkerStatus| {
        w.staleness.sum as f64 / w.staleness.count.max(1) as f64
    };
    assert!(
        mean(slow) > mean(fast),
        "slow {} vs fast {}",
        mean(slow),
        mean(fast)
    );
    assert!(
        run.report.step_staleness.max > 2,
        "async does not bound step staleness: {}",
        run.report.step_staleness.max
    );
}

#[test]
fn prefetch_makes_every_gradient_after_the_first_one_version_stale_and_still_learns() {
    let run = train(&["--workers", "1", "--mode", "async", "--prefetch"]);
    let s = &run.report.staleness;
    // Gradient 0 is pushed before anything was applied; every later one was computed on
    // parameters that lack the worker's own previous gradient.
    assert_eq!(s.count, run.report.final_metrics.version, "{s:?}");
    assert_eq!(s.max, 1, "{s:?}");
    assert_eq!(s.histogram[..2], [1, s.count - 1], "{s:?}");
    assert!(run.accuracy() >= 0.96, "accuracy {}", run.accuracy());
    let phases = &run.report.timing.workers[0].phases;
    assert!(
        phases.overlap > 0.0 && phases.overlap <= phases.compute,
        "communication behind compute is measured: {phases:?}"
    );
}

#[test]
fn prefetch_under_ssp_keeps_the_bound_and_finishes() {
    let run = train(&[
        "--workers",
        "2",
        "--mode",
        "ssp",
        "--staleness",
        "1",
        "--prefetch",
        "--epochs",
        "8",
        "--slow-worker",
        "0:4",
    ]);
    assert_step_staleness_within(&run, 1);
}
