//! Helpers the server's test binaries share (each binary declares `mod support;`).

#![allow(dead_code)] // each test binary uses a different part

use downpour_core::{ParamSet, Push};
use downpour_server::server_core::{CoreError, PushOutcome, ServerCore};

/// A gradient of the core's model shape, every value `v`.
pub fn gradient(core: &ServerCore, v: f32) -> ParamSet {
    let mut g = core.params().zeros_like();
    g.tensors_mut().for_each(|t| t.data_mut().fill(v));
    g
}

/// Pushes [`gradient`]`(core, v)`, conformed to the core's schema as the service conforms
/// every push before the core sees it.
///
/// # Errors
/// Whatever [`ServerCore::push`] refuses.
pub fn push_uniform(core: &mut ServerCore, push: &Push, v: f32) -> Result<PushOutcome, CoreError> {
    let conformed = core
        .schema()
        .conform(gradient(core, v))
        .expect("a gradient of the core's own shape conforms");
    core.push(push, conformed)
}
