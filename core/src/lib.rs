//! Downpour's shared domain: what the server and the workers must agree on, with no I/O
//! beyond reading a data file.
//!
//! # Layout
//! - [`consistency`]: the consistency modes and stale-gradient policies, by name.
//! - [`exchange`]: the facts of a pushed gradient, as they travel together.
//! - [`tensor`]: dense f32 tensors and ordered sets of named tensors.
//! - [`model_spec`]: the model a job trains (a kind, a preset or its own layers), and the parameter layout it implies.
//! - [`layer_spec`]: one layer as written in a job file (`"conv2d 32 3"`), parsed and printed.
//! - [`layer_stack`]: layers resolved for an input: each one's input and output shape, its parameters' names.
//! - [`layout`]: parameter names, shapes, and deterministic Xavier/He initialisation.
//! - [`data`]: built-in datasets, CSV and LibSVM files, the train/test split.
//! - [`schema`]: the tensors a gradient must hold, checked once, and the conformed set.
//! - [`sharding`]: which training samples each worker owns, and the per-epoch batch order.
//! - [`partition`]: how the parameters are split over S server shards.
//! - [`plan`]: what a worker receives when it registers.
//! - [`quote`]: peer input as error messages show it, a short prefix at most.
//! - [`status`]: what the server reports: progress, counters, losses, evaluations.
//! - [`timing`]: where a job's time goes: worker phases, server work, the job's clock.
//! - [`token`]: bearer tokens and the constant-time comparison of secrets.

pub mod consistency;
pub mod data;
pub mod exchange;
pub mod layer_spec;
pub mod layer_stack;
pub mod layout;
pub mod model_spec;
pub mod partition;
pub mod plan;
pub mod quote;
pub mod schema;
pub mod sharding;
pub mod status;
pub mod tensor;
pub mod timing;
pub mod token;

pub use data::{DataShape, DataSpec, Dataset, ImageShape, Targets, Task};
pub use exchange::Push;
pub use layout::ParameterLayout;
pub use model_spec::ModelSpec;
pub use plan::{Assignment, BatchSize, GlobalBatchError, TrainingPlan};
pub use quote::{Quoted, quote};
pub use tensor::{NamedTensor, ParamSet, Tensor};
