//! A shard's Prometheus metrics: every family is named `downpour_*` and labelled `shard`
//! (docs/metrics.md lists them).
//!
//! Two sources, each fact read in one place:
//! - what the core already counts (pushes by result, pulls, bytes, the version, workers by
//!   state, checkpoints written, losses and test metrics) is read from its status at each
//!   scrape, by [`StatusCollector`], so a scrape and a Status call never disagree;
//! - what the core does not keep (durations and the staleness distribution) is observed
//!   by the gRPC layer as it happens, into the histograms of [`ServerMetrics`].

use std::fmt;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use downpour_core::status::{ServerStatus, WorkerState};

/// Reads the shard's status at scrape time; `None` once the server is gone.
type StatusSource = Box<dyn Fn() -> Option<ServerStatus> + Send + Sync>;

/// The outcome label of a checkpoint write.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteResult {
    /// `ok` or `failed`.
    result: &'static str,
}

/// The shard's metrics: cheap to clone (every field is a shared handle), observed by the
/// service, registered once into the registry that the metrics endpoint serves.
#[derive(Clone)]
pub struct ServerMetrics {
    /// Seconds a push spent under the core's lock (checks, barrier, optimizer step).
    apply_seconds: Histogram,
    /// Seconds a pull or exchange waited for its step to be allowed (sync barrier, SSP bound).
    barrier_wait_seconds: Histogram,
    /// Staleness of each accepted gradient, in versions.
    staleness_versions: Histogram,
    /// Seconds per checkpoint write, successful or not.
    checkpoint_write_seconds: Histogram,
    /// Checkpoint writes by result.
    checkpoint_writes: Family<WriteResult, Counter>,
    /// Checkpoint writes that failed (also counted under `result="failed"` above).
    checkpoint_failures: Counter,
    /// Set once by [`crate::serve`]: where the scrape-time facts come from.
    status: Arc<OnceLock<StatusSource>>,
}

impl fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetrics")
            .field("status_attached", &self.status.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            apply_seconds: Histogram::new(exponential_buckets(1e-5, 4.0, 10)),
            barrier_wait_seconds: Histogram::new(exponential_buckets(1e-4, 4.0, 10)),
            staleness_versions: Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            checkpoint_write_seconds: Histogram::new(exponential_buckets(1e-3, 4.0, 9)),
            checkpoint_writes: Family::default(),
            checkpoint_failures: Counter::default(),
            status: Arc::new(OnceLock::new()),
        }
    }
}

impl ServerMetrics {
    /// Registers every family into `registry`, labelled `shard="<shard>"`.
    pub fn register(&self, registry: &mut Registry, shard: usize) {
        let r = registry.sub_registry_with_label(("shard".into(), shard.to_string().into()));
        r.register_with_unit(
            "downpour_apply",
            "Time a push spent under the core's lock: checks, barrier, optimizer step",
            Unit::Seconds,
            self.apply_seconds.clone(),
        );
        r.register_with_unit(
            "downpour_barrier_wait",
            "Time a pull waited for its step to be allowed (sync barrier, SSP bound)",
            Unit::Seconds,
            self.barrier_wait_seconds.clone(),
        );
        r.register(
            "downpour_staleness_versions",
            "Staleness of accepted gradients: server version minus the gradient's base version",
            self.staleness_versions.clone(),
        );
        r.register_with_unit(
            "downpour_checkpoint_write",
            "Time per checkpoint write",
            Unit::Seconds,
            self.checkpoint_write_seconds.clone(),
        );
        r.register(
            "downpour_checkpoint_writes",
            "Checkpoint writes by result (ok, failed)",
            self.checkpoint_writes.clone(),
        );
        r.register(
            "downpour_checkpoint_failures",
            "Checkpoint writes that failed (the previous checkpoint stays)",
            self.checkpoint_failures.clone(),
        );
        r.register_collector(Box::new(StatusCollector {
            status: Arc::clone(&self.status),
        }));
    }

    /// Tells the metrics where to read the shard's status at scrape time. Only the first
    /// call counts: one server per metrics handle.
    pub fn attach_status(&self, source: impl Fn() -> Option<ServerStatus> + Send + Sync + 'static) {
        let _ = self.status.set(Box::new(source));
    }

    /// A push accepted after `seconds` under the lock, `staleness` versions stale.
    pub fn pushed(&self, seconds: f64, staleness: u64) {
        self.apply_seconds.observe(seconds);
        self.staleness_versions.observe(staleness as f64);
    }

    /// A pull or exchange waited `seconds` for its step.
    pub fn waited(&self, seconds: f64) {
        self.barrier_wait_seconds.observe(seconds);
    }

    /// A checkpoint write that took `seconds` and succeeded or not.
    pub fn checkpoint_written(&self, seconds: f64, ok: bool) {
        self.checkpoint_write_seconds.observe(seconds);
        let result = if ok { "ok" } else { "failed" };
        self.checkpoint_writes
            .get_or_create(&WriteResult { result })
            .inc();
        if !ok {
            self.checkpoint_failures.inc();
        }
    }
}

/// Encodes, at each scrape, the facts the core keeps.
struct StatusCollector {
    /// See [`ServerMetrics::status`].
    status: Arc<OnceLock<StatusSource>>,
}

impl fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusCollector").finish_non_exhaustive()
    }
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        match self.status.get().and_then(|source| source()) {
            Some(status) => encode_status(&status, &mut encoder),
            None => Ok(()),
        }
    }
}

/// The scrape-time families of one shard's `status`.
fn encode_status(status: &ServerStatus, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let shard = &status.shard;
    let mut pushes: Vec<(&str, u64)> = vec![
        ("applied", shard.applied_pushes),
        ("duplicate", shard.duplicate_pushes),
        ("stale_dropped", shard.dropped_pushes),
    ];
    pushes.extend(shard.refused_pushes.iter().map(|(r, n)| (r.as_str(), *n)));
    let mut family = encoder.encode_descriptor(
        "downpour_pushes",
        "Gradient pushes by result: applied, duplicate, stale_dropped, or the reason they were refused",
        None,
        MetricType::Counter,
    )?;
    for (result, n) in pushes {
        ConstCounter::new(n).encode(family.encode_family(&[("result", result)])?)?;
    }
    counter(
        encoder,
        "downpour_pulls",
        "Pulls served (parameters sent)",
        shard.pulls,
    )?;
    let resumed = status.checkpoint.resumed_version.unwrap_or(0);
    counter(
        encoder,
        "downpour_updates_applied",
        "Optimizer steps applied by this process (version increments since it started)",
        status.version.saturating_sub(resumed),
    )?;
    counter(
        encoder,
        "downpour_bytes_received",
        "Tensor bytes received in pushes",
        shard.bytes_received,
    )?;
    counter(
        encoder,
        "downpour_bytes_sent",
        "Tensor bytes sent in pulls",
        shard.bytes_sent,
    )?;
    gauge(
        encoder,
        "downpour_version",
        "The parameters' version: updates applied since the job began",
        status.version as f64,
    )?;
    let mut family = encoder.encode_descriptor(
        "downpour_workers",
        "Registered workers by state: active, finished, left, dead",
        None,
        MetricType::Gauge,
    )?;
    for (state, name) in [
        (WorkerState::Active, "active"),
        (WorkerState::Finished, "finished"),
        (WorkerState::Left, "left"),
        (WorkerState::Dead, "dead"),
    ] {
        let n = status.workers.iter().filter(|w| w.state == state).count();
        ConstGauge::new(n as i64).encode(family.encode_family(&[("state", name)])?)?;
    }
    if shard.index != 0 {
        return Ok(());
    }
    // Shard 0 holds the job's training metrics.
    gauge(
        encoder,
        "downpour_epoch",
        "Job progress in epochs (fractional)",
        status.epoch_progress,
    )?;
    if let Some(epoch) = status.epochs.last() {
        gauge(
            encoder,
            "downpour_train_loss",
            "Mean training loss of the latest epoch",
            epoch.train_loss,
        )?;
    }
    let latest = status
        .final_evaluation
        .as_ref()
        .or(status.evaluations.last());
    if let Some(evaluation) = latest {
        gauge(
            encoder,
            "downpour_test_loss",
            "Test loss of the latest evaluation",
            evaluation.test_loss,
        )?;
        if let Some(accuracy) = evaluation.test_accuracy {
            gauge(
                encoder,
                "downpour_test_accuracy",
                "Test accuracy (fraction) of the latest evaluation",
                accuracy,
            )?;
        }
        if let Some(mse) = evaluation.test_mse {
            gauge(
                encoder,
                "downpour_test_mse",
                "Test mean squared error of the latest evaluation (regression)",
                mse,
            )?;
        }
    }
    Ok(())
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use downpour_core::status::{Evaluation, ShardStatus, WorkerStatus};

    fn worker(id: u32, state: WorkerState) -> WorkerStatus {
        WorkerStatus {
            id,
            name: format!("w{id}"),
            state,
            data_shards: Vec::new(),
            pulls: 0,
            pushes: 0,
            rejected_pushes: 0,
            samples: 0,
            next_step: 0,
            last_loss: None,
            staleness: Default::default(),
            step_staleness: Default::default(),
            dropped: 0,
        }
    }

    fn known_status() -> ServerStatus {
        let job = crate::JobSpec::default().validate().unwrap();
        let mut status = crate::server_core::ServerCore::new(job).status(1.5);
        status.version = 42;
        status.epoch_progress = 2.5;
        status.shard = ShardStatus {
            pushes: 90,
            pulls: 80,
            applied_pushes: 84,
            duplicate_pushes: 1,
            dropped_pushes: 2,
            bytes_received: 1000,
            bytes_sent: 2000,
            refused_pushes: [("non_finite".to_string(), 3)].into(),
            ..ShardStatus::default()
        };
        status.workers = vec![
            worker(0, WorkerState::Active),
            worker(1, WorkerState::Dead),
            worker(2, WorkerState::Active),
        ];
        status.final_evaluation = Some(Evaluation {
            worker_id: 0,
            version: 42,
            test_loss: 0.25,
            test_accuracy: Some(0.75),
            test_mse: None,
            test_samples: 100,
            is_final: true,
        });
        status
    }

    fn exposition(metrics: &ServerMetrics, shard: usize) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry, shard);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn the_exposition_of_a_known_state() {
        let metrics = ServerMetrics::default();
        let status = known_status();
        metrics.attach_status(move || Some(status.clone()));
        metrics.pushed(0.002, 3);
        metrics.waited(0.5);
        metrics.checkpoint_written(0.01, true);
        metrics.checkpoint_written(0.02, false);
        let text = exposition(&metrics, 0);
        for line in [
            "# TYPE downpour_pushes counter",
            r#"downpour_pushes_total{shard="0",result="applied"} 84"#,
            r#"downpour_pushes_total{shard="0",result="duplicate"} 1"#,
            r#"downpour_pushes_total{shard="0",result="stale_dropped"} 2"#,
            r#"downpour_pushes_total{shard="0",result="non_finite"} 3"#,
            r#"downpour_pulls_total{shard="0"} 80"#,
            r#"downpour_updates_applied_total{shard="0"} 42"#,
            r#"downpour_bytes_received_total{shard="0"} 1000"#,
            r#"downpour_bytes_sent_total{shard="0"} 2000"#,
            r#"downpour_version{shard="0"} 42.0"#,
            r#"downpour_workers{shard="0",state="active"} 2"#,
            r#"downpour_workers{shard="0",state="dead"} 1"#,
            r#"downpour_workers{shard="0",state="left"} 0"#,
            r#"downpour_epoch{shard="0"} 2.5"#,
            r#"downpour_test_loss{shard="0"} 0.25"#,
            r#"downpour_test_accuracy{shard="0"} 0.75"#,
            "# TYPE downpour_apply_seconds histogram",
            r#"downpour_apply_seconds_count{shard="0"} 1"#,
            r#"downpour_staleness_versions_bucket{shard="0",le="2.0"} 0"#,
            r#"downpour_staleness_versions_bucket{shard="0",le="4.0"} 1"#,
            r#"downpour_barrier_wait_seconds_sum{shard="0"} 0.5"#,
            r#"downpour_checkpoint_writes_total{shard="0",result="ok"} 1"#,
            r#"downpour_checkpoint_writes_total{shard="0",result="failed"} 1"#,
            r#"downpour_checkpoint_failures_total{shard="0"} 1"#,
            r#"downpour_checkpoint_write_seconds_count{shard="0"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn only_shard_zero_reports_training_metrics() {
        let metrics = ServerMetrics::default();
        let mut status = known_status();
        status.shard.index = 1;
        metrics.attach_status(move || Some(status.clone()));
        let text = exposition(&metrics, 1);
        assert!(
            text.contains(r#"downpour_version{shard="1"} 42.0"#),
            "{text}"
        );
        assert!(!text.contains("downpour_test_accuracy"), "{text}");
        assert!(!text.contains("downpour_epoch"), "{text}");
    }

    #[test]
    fn updates_applied_counts_from_the_resumed_version() {
        let metrics = ServerMetrics::default();
        let mut status = known_status();
        status.checkpoint.resumed_version = Some(40);
        metrics.attach_status(move || Some(status.clone()));
        let text = exposition(&metrics, 0);
        assert!(
            text.contains(r#"downpour_updates_applied_total{shard="0"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn without_a_server_only_the_observed_families_are_served() {
        let text = exposition(&ServerMetrics::default(), 0);
        assert!(!text.contains("downpour_version"), "{text}");
        assert!(text.contains("downpour_apply_seconds_count"), "{text}");
    }
}
