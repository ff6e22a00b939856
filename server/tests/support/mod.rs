//! Helpers the server's test binaries share (each binary declares `mod support;`).

use downpour_core::ParamSet;
use downpour_server::server_core::ServerCore;

/// A gradient of the core's model shape, every value `v`.
pub fn gradient(core: &ServerCore, v: f32) -> ParamSet {
    let mut g = core.params().zeros_like();
    g.tensors_mut().for_each(|t| t.data_mut().fill(v));
    g
}
