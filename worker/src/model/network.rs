//! The computation every model is: a stack of layers and a loss on the last one's outputs.
//!
//! Between layers a batch is one `[samples, values]` matrix, each row a sample in
//! PyTorch's order (an image's `(C, H, W)` values row-major), so `flatten` moves
//! nothing. Every buffer lives in a [`Workspace`] that grows to the largest batch it has
//! seen and is reused, so a step at a steady batch size allocates nothing.
//!
//! Activations work in place on the output of the dense, convolution or pooling layer
//! before them (whose backward passes never read their own outputs); the backward pass
//! of every activation reads only its own output.

use downpour_core::layer_spec::LayerSpec;
use downpour_core::layer_stack::{Dims, LayerStack};
use downpour_core::model_spec::Activation;
use ndarray::{ArrayView2, ArrayViewMut2};

use super::activation::{activate, backpropagate};
use super::conv::{ConvGeometry, ConvScratch, prefix};
use super::dropout::{StepKey, fill_mask};
use super::linear::{Linear, LinearGradient};
use super::loss::{Loss, Target};
use super::pool::PoolGeometry;
use super::scalar::Scalar;

/// What one layer computes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    /// `x Wᵀ + b`.
    Dense,
    /// A convolution of these sizes.
    Conv(ConvGeometry),
    /// A max-pooling of these sizes.
    Pool(PoolGeometry),
    /// An element-wise non-linearity.
    Activation(Activation),
    /// Dropout at this rate (training only).
    Dropout(f32),
    /// Nothing: the values are already in order.
    Flatten,
}

/// Where a layer's input or output values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The batch's features.
    Input,
    /// `Workspace::slots[i]`.
    Buffer(usize),
}

/// One layer of the network, with where its values go.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Layer {
    /// What it computes.
    op: Op,
    /// Values per sample in.
    in_values: usize,
    /// Values per sample out.
    out_values: usize,
    /// Where its input is.
    input: Slot,
    /// Where its output is: the input's slot for an in-place layer.
    output: Slot,
    /// The index of its parameters among the parametrised layers, for dense and conv.
    params: Option<usize>,
}

/// Whether a pass trains (dropout on, with the key's masks) or only evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A gradient step: dropout masks drawn from the key.
    Train(StepKey),
    /// Evaluation and prediction: dropout is the identity.
    Evaluate,
}

/// The buffers one pass uses, reused by the next.
#[derive(Debug)]
pub(crate) struct Workspace<F> {
    /// Each slot's values, `[samples, values]` row-major in its first `samples·values` entries.
    slots: Vec<Vec<F>>,
    /// Per layer: the convolution's patches and products (empty for other layers).
    conv: Vec<ConvScratch<F>>,
    /// Per layer: where each pooling maximum was (empty for other layers).
    argmax: Vec<Vec<u32>>,
    /// Per layer: the dropout mask of the last training pass (empty for other layers).
    masks: Vec<Vec<F>>,
    /// The gradient w.r.t. the current layer's output, and the one below it.
    deltas: [Vec<F>; 2],
}

/// The layers and the loss of a model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Network {
    /// The layers, input side first; not empty.
    layers: Vec<Layer>,
    /// Applied to the last layer's raw outputs.
    pub(crate) loss: Loss,
    /// Number of buffer slots the layers use.
    slots: usize,
}

impl Network {
    /// The network of `stack` with `loss` on its outputs.
    pub(crate) fn new(stack: &LayerStack, loss: Loss) -> Self {
        let mut layers = Vec::with_capacity(stack.layers().len());
        let mut slots = 0;
        let mut current = Slot::Input;
        // Whether the values in `current` may be overwritten in place (nothing reads them back).
        let mut overwritable = false;
        let mut params = 0;
        for layer in stack.layers() {
            let op = op_of(layer.layer, layer.input, layer.output);
            let in_place = match op {
                Op::Flatten => current != Slot::Input,
                Op::Activation(_) => overwritable,
                _ => false,
            };
            let output = if in_place {
                current
            } else {
                slots += 1;
                Slot::Buffer(slots - 1)
            };
            overwritable = match op {
                Op::Dense | Op::Conv(_) | Op::Pool(_) => true,
                Op::Flatten => overwritable,
                Op::Activation(_) | Op::Dropout(_) => false,
            };
            let has_params = matches!(op, Op::Dense | Op::Conv(_));
            layers.push(Layer {
                op,
                in_values: layer.input.values(),
                out_values: layer.output.values(),
                input: current,
                output,
                params: has_params.then_some(params),
            });
            params += usize::from(has_params);
            current = output;
        }
        Self {
            layers,
            loss,
            slots,
        }
    }

    /// Empty buffers for this network's passes.
    pub(crate) fn workspace<F: Scalar>(&self) -> Workspace<F> {
        let n = self.layers.len();
        Workspace {
            slots: (0..self.slots).map(|_| Vec::new()).collect(),
            conv: (0..n).map(|_| ConvScratch::default()).collect(),
            argmax: vec![Vec::new(); n],
            masks: vec![Vec::new(); n],
            deltas: [Vec::new(), Vec::new()],
        }
    }

    /// The number of layers with parameters (each a weight and a bias).
    pub(crate) fn parametrised(&self) -> usize {
        self.layers.iter().filter(|l| l.params.is_some()).count()
    }

    /// The last layer's raw outputs (logits) for a `[samples, in]` input, a view into `ws`.
    pub(crate) fn forward<'w, F: Scalar>(
        &self,
        params: &[Linear<'_, F>],
        input: ArrayView2<'_, F>,
        mode: Mode,
        ws: &'w mut Workspace<F>,
    ) -> ArrayViewMut2<'w, F> {
        let input = input
            .as_slice()
            .expect("batches are row-major (Dataset::select and row slices of it are)");
        let samples = input.len() / self.layers[0].in_values;
        for (index, layer) in self.layers.iter().enumerate() {
            self.forward_layer(index, layer, params, input, samples, mode, ws);
        }
        let last = self.layers[self.layers.len() - 1];
        let Slot::Buffer(i) = last.output else {
            unreachable!("every layer writes a buffer")
        };
        let values = &mut ws.slots[i][..samples * last.out_values];
        ArrayViewMut2::from_shape((samples, last.out_values), values).expect("sized by the pass")
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_layer<F: Scalar>(
        &self,
        index: usize,
        layer: &Layer,
        params: &[Linear<'_, F>],
        input: &[F],
        samples: usize,
        mode: Mode,
        ws: &mut Workspace<F>,
    ) {
        let in_place = layer.input == layer.output;
        let Slot::Buffer(out_slot) = layer.output else {
            unreachable!("every layer writes a buffer (a flatten of the features copies them)")
        };
        if in_place && layer.op == Op::Flatten {
            return;
        }
        let n_out = samples * layer.out_values;
        let mut output = std::mem::take(&mut ws.slots[out_slot]);
        {
            let x: &[F] = match layer.input {
                Slot::Input => input,
                Slot::Buffer(i) if i == out_slot => &[],
                Slot::Buffer(i) => &ws.slots[i][..samples * layer.in_values],
            };
            let out = prefix(&mut output, n_out);
            match layer.op {
                Op::Dense => {
                    let p = &params[layer.params.expect("dense layers have parameters")];
                    let x = ArrayView2::from_shape((samples, layer.in_values), x).expect("sized");
                    let out =
                        ArrayViewMut2::from_shape((samples, layer.out_values), out).expect("sized");
                    p.forward(x, out);
                }
                Op::Conv(g) => {
                    let p = &params[layer.params.expect("conv layers have parameters")];
                    g.forward(p, x, out, &mut ws.conv[index]);
                }
                Op::Pool(g) => g.forward(x, out, prefix32(&mut ws.argmax[index], n_out)),
                Op::Activation(a) => {
                    if !in_place {
                        out.copy_from_slice(x);
                    }
                    let out =
                        ArrayViewMut2::from_shape((samples, layer.out_values), out).expect("sized");
                    activate(a, out);
                }
                Op::Dropout(rate) => match mode {
                    Mode::Train(key) => {
                        let mask = prefix(&mut ws.masks[index], n_out);
                        fill_mask(rate, key, index, mask);
                        for ((o, &v), &m) in out.iter_mut().zip(x).zip(&*mask) {
                            *o = v * m;
                        }
                    }
                    Mode::Evaluate => out.copy_from_slice(x),
                },
                Op::Flatten => out.copy_from_slice(x),
            }
        }
        ws.slots[out_slot] = output;
    }

    /// The mean loss over the batch; its gradient w.r.t. every parametrised layer's
    /// parameters is written into `gradients` (one per such layer, same shapes).
    ///
    /// `target` matches the outputs and the batch is not empty (the caller's invariants).
    pub(crate) fn loss_and_gradient<F: Scalar>(
        &self,
        params: &[Linear<'_, F>],
        input: ArrayView2<'_, F>,
        target: Target<'_, F>,
        gradients: &mut [LinearGradient<'_, F>],
        key: StepKey,
        ws: &mut Workspace<F>,
    ) -> f64 {
        let samples = input.nrows();
        let outputs = self.forward(params, input, Mode::Train(key), ws).len();
        let input = input.as_slice().expect("checked by forward");
        let last = self.layers.len() - 1;
        let width = self.layers[last].out_values;
        // The loss gradient goes into the delta buffer: the logits stay for the backward pass.
        let mut delta = std::mem::take(&mut ws.deltas[0]);
        let mut below = std::mem::take(&mut ws.deltas[1]);
        let logits = slot(ws, self.layers[last].output, input, samples * width);
        prefix(&mut delta, outputs).copy_from_slice(logits);
        let mut d =
            ArrayViewMut2::from_shape((samples, width), &mut delta[..outputs]).expect("sized");
        let loss = self.loss.mean_and_gradient(&mut d, target);

        for (index, layer) in self.layers.iter().enumerate().rev() {
            let n_out = samples * layer.out_values;
            let n_in = samples * layer.in_values;
            let wants_input_delta = index > 0;
            match layer.op {
                Op::Dense => {
                    let i = layer.params.expect("dense layers have parameters");
                    let (p, g) = (&params[i], &mut gradients[i]);
                    let x = slot(ws, layer.input, input, n_in);
                    let x = ArrayView2::from_shape((samples, layer.in_values), x).expect("sized");
                    let d = ArrayView2::from_shape((samples, layer.out_values), &delta[..n_out])
                        .expect("sized");
                    p.backward(x, d, g);
                    if wants_input_delta {
                        let b = prefix(&mut below, n_in);
                        let b = ArrayViewMut2::from_shape((samples, layer.in_values), b)
                            .expect("sized");
                        p.input_delta(d, b);
                        std::mem::swap(&mut delta, &mut below);
                    }
                }
                Op::Conv(geometry) => {
                    let i = layer.params.expect("conv layers have parameters");
                    let d_input = wants_input_delta.then(|| prefix(&mut below, n_in));
                    geometry.backward(
                        &params[i],
                        &delta[..n_out],
                        &mut gradients[i],
                        d_input,
                        &mut ws.conv[index],
                    );
                    if wants_input_delta {
                        std::mem::swap(&mut delta, &mut below);
                    }
                }
                Op::Pool(geometry) => {
                    if wants_input_delta {
                        geometry.backward(
                            &delta[..n_out],
                            &ws.argmax[index][..n_out],
                            prefix(&mut below, n_in),
                        );
                        std::mem::swap(&mut delta, &mut below);
                    }
                }
                Op::Activation(a) => {
                    if wants_input_delta {
                        let out = slot(ws, layer.output, input, n_out);
                        let out = ArrayView2::from_shape((samples, layer.out_values), out)
                            .expect("sized");
                        let d = ArrayViewMut2::from_shape(
                            (samples, layer.out_values),
                            &mut delta[..n_out],
                        )
                        .expect("sized");
                        backpropagate(a, d, out);
                    }
                }
                Op::Dropout(_) => {
                    for (d, &m) in delta[..n_out].iter_mut().zip(&ws.masks[index]) {
                        *d *= m;
                    }
                }
                Op::Flatten => {}
            }
        }
        ws.deltas = [delta, below];
        loss
    }
}

/// The values of `slot` (the first `n`).
fn slot<'a, F>(ws: &'a Workspace<F>, slot: Slot, input: &'a [F], n: usize) -> &'a [F] {
    match slot {
        Slot::Input => &input[..n],
        Slot::Buffer(i) => &ws.slots[i][..n],
    }
}

/// `buffer[..n]`, growing it first if it is shorter.
fn prefix32(buffer: &mut Vec<u32>, n: usize) -> &mut [u32] {
    if buffer.len() < n {
        buffer.resize(n, 0);
    }
    &mut buffer[..n]
}

/// The op of a resolved layer.
fn op_of(layer: LayerSpec, input: Dims, output: Dims) -> Op {
    match (layer, input, output) {
        (LayerSpec::Dense { .. }, _, _) => Op::Dense,
        (
            LayerSpec::Conv2d {
                channels,
                kernel,
                stride,
                padding,
            },
            Dims::Image(i),
            Dims::Image(o),
        ) => Op::Conv(ConvGeometry {
            in_c: i.channels,
            in_h: i.height,
            in_w: i.width,
            out_c: channels,
            kernel,
            stride,
            padding,
            out_h: o.height,
            out_w: o.width,
        }),
        (LayerSpec::MaxPool2d { size }, Dims::Image(i), Dims::Image(o)) => Op::Pool(PoolGeometry {
            channels: i.channels,
            in_h: i.height,
            in_w: i.width,
            size,
            out_h: o.height,
            out_w: o.width,
        }),
        (LayerSpec::Relu, _, _) => Op::Activation(Activation::Relu),
        (LayerSpec::Tanh, _, _) => Op::Activation(Activation::Tanh),
        (LayerSpec::Sigmoid, _, _) => Op::Activation(Activation::Sigmoid),
        (LayerSpec::Dropout { rate }, _, _) => Op::Dropout(rate),
        (LayerSpec::Flatten, _, _) => Op::Flatten,
        (layer, input, output) => {
            unreachable!("LayerStack::resolve refuses {layer} from {input} to {output}")
        }
    }
}
