//! Downpour's shared domain: what the server and the workers must agree on, with no I/O
//! beyond reading a data file.
//!
//! # Layout
//! - [`exchange`]: the facts of a pushed gradient, as they travel together.
//! - [`tensor`]: dense f32 tensors and ordered sets of named tensors.
//! - [`model_spec`]: the model a job trains, and the parameter layout it implies.
//! - [`layout`]: parameter names, shapes, and deterministic Xavier/He initialisation.
//! - [`data`]: built-in datasets, CSV and LibSVM files, the train/test split.
//! - [`schema`]: the tensors a gradient must hold, checked once, and the conformed set.
//! - [`sharding`]: which training samples each worker owns, and the per-epoch batch order.
//! - [`partition`]: how the parameters are split over S server shards.
//! - [`plan`]: what a worker receives when it registers.
//! - [`status`]: what the server reports: progress, counters, losses, evaluations.
//! - [`timing`]: where a job's time goes: worker phases, server work, the job's clock.

pub mod data;
pub mod exchange;
pub mod layout;
pub mod model_spec;
pub mod partition;
pub mod plan;
pub mod schema;
pub mod sharding;
pub mod status;
pub mod tensor;
pub mod timing;

pub use data::{DataShape, DataSpec, Dataset, Targets, Task};
pub use exchange::Push;
pub use layout::ParameterLayout;
pub use model_spec::ModelSpec;
pub use plan::{Assignment, BatchSize, GlobalBatchError, TrainingPlan};
pub use tensor::{NamedTensor, ParamSet, Tensor};
