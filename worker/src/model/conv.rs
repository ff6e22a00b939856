//! PyTorch's `nn.Conv2d` (cross-correlation, square kernel, stride, zero padding) as
//! im2col followed by one matrix product per image.
//!
//! With `P = out_h·out_w` kernel positions and `K = in_c·k·k` values per patch, image `b`'s
//! patches are `cols_b [P, K]` (zeros where the padding is) and its output is read in
//! place as `out_b [C_out, P]` (torch's `[C, H, W]` layout):
//! - forward: `out_b = [W | bias] [cols_b | 1]ᵀ`, one product per image, no reordering
//!   copy, the bias added by the product (each patch is stored with a trailing 1);
//! - backward: with `delta_b [C_out, P]` the output gradient read the same way,
//!   `[∂W | ∂b] = Σ_b delta_b [cols_b | 1]` (one product gives both), and the input gradient is
//!   `col2im(delta_bᵀ W)`: every patch value's gradient added back where it was read.
//!
//! `W [C_out, K]` is PyTorch's `[out, in, kh, kw]` weight read row-major, so a patch is
//! laid out `(c, ky, kx)`, channel slowest, to match.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use super::linear::{Linear, LinearGradient};
use super::scalar::Scalar;

/// The sizes of one convolution on one input shape.
///
/// Invariant: `out_h = (in_h + 2 padding - kernel) / stride + 1`, likewise `out_w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    /// Input channels.
    pub(crate) in_c: usize,
    /// Input rows.
    pub(crate) in_h: usize,
    /// Input columns.
    pub(crate) in_w: usize,
    /// Output channels.
    pub(crate) out_c: usize,
    /// Kernel side.
    pub(crate) kernel: usize,
    /// Step between kernel positions.
    pub(crate) stride: usize,
    /// Zeros on every side of the input.
    pub(crate) padding: usize,
    /// Output rows.
    pub(crate) out_h: usize,
    /// Output columns.
    pub(crate) out_w: usize,
}

/// The buffers one convolution reuses from step to step.
#[derive(Debug)]
pub(crate) struct ConvScratch<F> {
    /// `[B·P, K]`: the patches of the last forward pass (read again by the backward pass).
    cols: Vec<F>,
    /// `[B·P, K]`: the patches' gradient.
    dcols: Vec<F>,
    /// `[C_out, K + 1]`: the weight with the bias as its last column (forward), then the
    /// weight gradient with the bias gradient as its last column (backward).
    augmented: Vec<F>,
}

impl<F> Default for ConvScratch<F> {
    fn default() -> Self {
        Self {
            cols: Vec::new(),
            dcols: Vec::new(),
            augmented: Vec::new(),
        }
    }
}

/// `buffer[..n]`, growing `buffer` with zeros first if it is shorter (it never shrinks).
pub(crate) fn prefix<F: Scalar>(buffer: &mut Vec<F>, n: usize) -> &mut [F] {
    if buffer.len() < n {
        buffer.resize(n, F::zero());
    }
    &mut buffer[..n]
}

impl ConvGeometry {
    /// Values per patch, `in_c·k·k` (the weight matrix's columns).
    pub(crate) fn patch(&self) -> usize {
        self.in_c * self.kernel * self.kernel
    }

    /// Kernel positions per image, `out_h·out_w`.
    pub(crate) fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Values per input image.
    pub(crate) fn in_values(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }

    /// Values per output image.
    pub(crate) fn out_values(&self) -> usize {
        self.out_c * self.positions()
    }

    /// Visits every kernel row of every patch of `batch` images, in pieces:
    /// `visit(col, Some(at), len)` for `len` values at `cols[col..]` read from
    /// `input[at..]`, `visit(col, None, len)` for `len` padding values at `cols[col..]`.
    /// Patches start `stride` values apart in `cols`.
    fn for_each_patch_row(
        &self,
        batch: usize,
        stride: usize,
        mut visit: impl FnMut(usize, Option<usize>, usize),
    ) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let patch = stride;
        for b in 0..batch {
            let image = b * self.in_values();
            for oy in 0..self.out_h {
                for ox in 0..self.out_w {
                    let row = ((b * self.out_h + oy) * self.out_w + ox) * patch;
                    // Columns of the kernel row that fall inside the image: kx in lo..hi.
                    let x0 = (ox * s) as isize - p as isize;
                    let lo = (-x0).clamp(0, k as isize) as usize;
                    let hi = (self.in_w as isize - x0).clamp(0, k as isize) as usize;
                    for c in 0..self.in_c {
                        for ky in 0..k {
                            let col = row + (c * k + ky) * k;
                            let y = (oy * s + ky) as isize - p as isize;
                            if y < 0 || y >= self.in_h as isize || lo >= hi {
                                visit(col, None, k);
                                continue;
                            }
                            if lo > 0 {
                                visit(col, None, lo);
                            }
                            let start = image
                                + (c * self.in_h + y as usize) * self.in_w
                                + (x0 + lo as isize) as usize;
                            visit(col + lo, Some(start), hi - lo);
                            if hi < k {
                                visit(col + hi, None, k - hi);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Fills `cols [B·P, K + 1]` with the patches of `input [B, in_values]` (zeros for
    /// padding), each followed by a 1 (the bias's input).
    pub(crate) fn im2col<F: Scalar>(&self, input: &[F], cols: &mut [F]) {
        let batch = input.len() / self.in_values();
        let stride = self.patch() + 1;
        for row in cols.chunks_exact_mut(stride) {
            row[stride - 1] = F::one();
        }
        // Element loops, not `copy_from_slice`/`fill`: the pieces are a kernel row long
        // (3 values for a 3×3 kernel), too short to pay for a call to memcpy/memset.
        self.for_each_patch_row(batch, stride, |col, at, len| {
            let cols = &mut cols[col..col + len];
            match at {
                Some(at) => {
                    for (c, &v) in cols.iter_mut().zip(&input[at..at + len]) {
                        *c = v;
                    }
                }
                None => cols.iter_mut().for_each(|c| *c = F::zero()),
            }
        });
    }

    /// Adds every patch value's gradient in `dcols [B·P, K]` to where it was read in
    /// `d_input [B, in_values]` (which the caller zeroed); padding gradients are dropped.
    pub(crate) fn col2im<F: Scalar>(&self, dcols: &[F], d_input: &mut [F]) {
        let batch = d_input.len() / self.in_values();
        self.for_each_patch_row(batch, self.patch(), |col, at, len| {
            if let Some(at) = at {
                for (d, &g) in d_input[at..at + len].iter_mut().zip(&dcols[col..col + len]) {
                    *d += g;
                }
            }
        });
    }

    /// Writes the convolution of `input [B, in_values]` into `output [B, out_values]`.
    ///
    /// One product per image, `out_b [C_out, P] = [W | bias] [cols_b | 1]ᵀ`, written
    /// straight into the image's place in `output` (channels slowest, as torch lays it
    /// out): no reordering copy, and the bias rides in the product.
    pub(crate) fn forward<F: Scalar>(
        &self,
        params: &Linear<'_, F>,
        input: &[F],
        output: &mut [F],
        scratch: &mut ConvScratch<F>,
    ) {
        let batch = input.len() / self.in_values();
        let (positions, stride) = (self.positions(), self.patch() + 1);
        let cols = prefix(&mut scratch.cols, batch * positions * stride);
        self.im2col(input, cols);
        let augmented = prefix(&mut scratch.augmented, self.out_c * stride);
        for ((row, weight), &bias) in augmented
            .chunks_exact_mut(stride)
            .zip(params.weight.rows())
            .zip(params.bias)
        {
            for (a, &w) in row.iter_mut().zip(weight) {
                *a = w;
            }
            row[stride - 1] = bias;
        }
        let augmented =
            ArrayView2::from_shape((self.out_c, stride), &*augmented).expect("sized above");
        for (image, cols) in output
            .chunks_exact_mut(self.out_values())
            .zip(cols.chunks_exact(positions * stride))
        {
            let cols = ArrayView2::from_shape((positions, stride), cols).expect("sized above");
            let mut out =
                ArrayViewMut2::from_shape((self.out_c, positions), image).expect("sized above");
            general_mat_mul(F::one(), &augmented, &cols.t(), F::zero(), &mut out);
        }
    }

    /// Writes the parameter gradient for `delta [B, out_values]` (the loss gradient
    /// w.r.t. the output of the last [`ConvGeometry::forward`]) into `gradient`, and the
    /// input gradient into `d_input [B, in_values]` when asked.
    ///
    /// Image by image, `delta_b [C_out, P]` read in place: `[∂W | ∂b] += delta_b [cols_b | 1]`,
    /// `dcols_b = delta_bᵀ W`.
    pub(crate) fn backward<F: Scalar>(
        &self,
        params: &Linear<'_, F>,
        delta: &[F],
        gradient: &mut LinearGradient<'_, F>,
        d_input: Option<&mut [F]>,
        scratch: &mut ConvScratch<F>,
    ) {
        let batch = delta.len() / self.out_values();
        let (positions, patch, stride) = (self.positions(), self.patch(), self.patch() + 1);
        let cols = &scratch.cols[..batch * positions * stride];
        let augmented = prefix(&mut scratch.augmented, self.out_c * stride);
        augmented.fill(F::zero());
        let mut sum =
            ArrayViewMut2::from_shape((self.out_c, stride), &mut *augmented).expect("sized");
        let images = delta.chunks_exact(self.out_values());
        for (image, cols) in images.clone().zip(cols.chunks_exact(positions * stride)) {
            let image = ArrayView2::from_shape((self.out_c, positions), image).expect("sized");
            let cols =
                ArrayView2::from_shape((positions, stride), cols).expect("forward filled it");
            general_mat_mul(F::one(), &image, &cols, F::one(), &mut sum);
        }
        for ((row, mut weight), bias) in augmented
            .chunks_exact(stride)
            .zip(gradient.weight.rows_mut())
            .zip(gradient.bias.iter_mut())
        {
            for (w, &a) in weight.iter_mut().zip(row) {
                *w = a;
            }
            *bias = row[patch];
        }
        if let Some(d_input) = d_input {
            let dcols = prefix(&mut scratch.dcols, batch * positions * patch);
            for (image, dcols) in images.zip(dcols.chunks_exact_mut(positions * patch)) {
                let image = ArrayView2::from_shape((self.out_c, positions), image).expect("sized");
                let mut dcols =
                    ArrayViewMut2::from_shape((positions, patch), dcols).expect("sized above");
                general_mat_mul(F::one(), &image.t(), &params.weight, F::zero(), &mut dcols);
            }
            d_input.fill(F::zero());
            self.col2im(dcols, d_input);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2};

    use super::*;

    /// The direct definition: `out[b, co, oy, ox] = bias[co] + Σ w[co, c, ky, kx] x[b, c, oy s + ky - p, ox s + kx - p]`.
    fn direct(g: &ConvGeometry, w: &Array2<f64>, bias: &Array1<f64>, x: &[f64]) -> Vec<f64> {
        let batch = x.len() / g.in_values();
        let mut out = vec![0.0; batch * g.out_values()];
        for b in 0..batch {
            for co in 0..g.out_c {
                for oy in 0..g.out_h {
                    for ox in 0..g.out_w {
                        let mut sum = bias[co];
                        for c in 0..g.in_c {
                            for ky in 0..g.kernel {
                                for kx in 0..g.kernel {
                                    let y = (oy * g.stride + ky) as isize - g.padding as isize;
                                    let xx = (ox * g.stride + kx) as isize - g.padding as isize;
                                    if y < 0
                                        || xx < 0
                                        || y >= g.in_h as isize
                                        || xx >= g.in_w as isize
                                    {
                                        continue;
                                    }
                                    let v = x[b * g.in_values()
                                        + (c * g.in_h + y as usize) * g.in_w
                                        + xx as usize];
                                    sum += w[[co, (c * g.kernel + ky) * g.kernel + kx]] * v;
                                }
                            }
                        }
                        out[b * g.out_values() + (co * g.out_h + oy) * g.out_w + ox] = sum;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_and_one_product_equal_the_direct_sum_with_stride_and_padding() {
        for (stride, padding) in [(1, 0), (2, 1), (1, 2), (3, 0)] {
            let (in_h, in_w, kernel) = (7, 6, 3);
            let g = ConvGeometry {
                in_c: 2,
                in_h,
                in_w,
                out_c: 3,
                kernel,
                stride,
                padding,
                out_h: (in_h + 2 * padding - kernel) / stride + 1,
                out_w: (in_w + 2 * padding - kernel) / stride + 1,
            };
            let w =
                Array2::from_shape_fn((3, g.patch()), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
            let bias = Array1::from(vec![0.5, -1.0, 2.0]);
            let x: Vec<f64> = (0..2 * g.in_values())
                .map(|i| ((i * 5) % 13) as f64 - 6.0)
                .collect();
            let mut out = vec![f64::NAN; 2 * g.out_values()];
            let params = Linear {
                weight: w.view(),
                bias: bias.view(),
            };
            g.forward(&params, &x, &mut out, &mut ConvScratch::default());
            assert_eq!(
                out,
                direct(&g, &w, &bias, &x),
                "stride {stride} padding {padding}"
            );
        }
    }
}
