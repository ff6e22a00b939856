//! PyTorch's `nn.MaxPool2d(k)`: the maximum of each `k × k` window, stride `k`, no
//! padding; rows and columns that do not fill a window are dropped (`floor`).
//!
//! The backward pass sends each output's gradient to the input that was the maximum
//! (the first one in row-major order on ties, as PyTorch's CPU kernel), so the forward
//! pass records where each maximum was.

use super::scalar::Scalar;

/// The sizes of one pooling on one input shape.
///
/// Invariant: `out_h = in_h / size`, `out_w = in_w / size`, both at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolGeometry {
    /// Channels (in and out).
    pub(crate) channels: usize,
    /// Input rows.
    pub(crate) in_h: usize,
    /// Input columns.
    pub(crate) in_w: usize,
    /// Window side and stride.
    pub(crate) size: usize,
    /// Output rows.
    pub(crate) out_h: usize,
    /// Output columns.
    pub(crate) out_w: usize,
}

impl PoolGeometry {
    /// Writes each window's maximum of `input [B, in_values]` into `output [B, out_values]`
    /// and its position in `input` into `argmax` (one per output value).
    pub(crate) fn forward<F: Scalar>(&self, input: &[F], output: &mut [F], argmax: &mut [u32]) {
        if self.size == 2 {
            self.forward_2x2(input, output, argmax);
        } else {
            self.forward_any(input, output, argmax);
        }
    }

    /// [`PoolGeometry::forward`] for any window size.
    fn forward_any<F: Scalar>(&self, input: &[F], output: &mut [F], argmax: &mut [u32]) {
        let planes = input.len() / (self.in_h * self.in_w);
        let mut o = 0;
        for plane in 0..planes {
            let base = plane * self.in_h * self.in_w;
            for oy in 0..self.out_h {
                for ox in 0..self.out_w {
                    let mut best = base + oy * self.size * self.in_w + ox * self.size;
                    for ky in 0..self.size {
                        let row = base + (oy * self.size + ky) * self.in_w + ox * self.size;
                        for at in row..row + self.size {
                            if input[at] > input[best] {
                                best = at;
                            }
                        }
                    }
                    output[o] = input[best];
                    #[allow(clippy::cast_possible_truncation)]
                    {
                        argmax[o] = best as u32;
                    }
                    o += 1;
                }
            }
        }
    }

    /// [`PoolGeometry::forward`] for 2×2 windows, the common case, a pair of rows at a time.
    fn forward_2x2<F: Scalar>(&self, input: &[F], output: &mut [F], argmax: &mut [u32]) {
        let (w, plane) = (self.in_w, self.in_h * self.in_w);
        let outputs = output
            .chunks_exact_mut(self.out_w)
            .zip(argmax.chunks_exact_mut(self.out_w));
        let rows = (0..input.len() / plane)
            .flat_map(|p| (0..self.out_h).map(move |oy| p * plane + 2 * oy * w));
        for ((out, arg), start) in outputs.zip(rows) {
            let top = &input[start..start + w];
            let bottom = &input[start + w..start + 2 * w];
            for (ox, (o, a)) in out.iter_mut().zip(arg.iter_mut()).enumerate() {
                let x = 2 * ox;
                let mut best = (top[x], start + x);
                for (v, at) in [
                    (top[x + 1], start + x + 1),
                    (bottom[x], start + w + x),
                    (bottom[x + 1], start + w + x + 1),
                ] {
                    if v > best.0 {
                        best = (v, at);
                    }
                }
                *o = best.0;
                #[allow(clippy::cast_possible_truncation)]
                {
                    *a = best.1 as u32;
                }
            }
        }
    }

    /// Writes the input gradient `d_input [B, in_values]` for the output gradient `delta`.
    pub(crate) fn backward<F: Scalar>(&self, delta: &[F], argmax: &[u32], d_input: &mut [F]) {
        d_input.fill(F::zero());
        for (&d, &at) in delta.iter().zip(argmax) {
            d_input[at as usize] += d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_window_maxima_drops_the_ragged_edge_and_routes_gradients_back() {
        // One 3×5 plane, windows of 2: one row of two windows; row 2 and column 4 dropped.
        let g = PoolGeometry {
            channels: 1,
            in_h: 3,
            in_w: 5,
            size: 2,
            out_h: 1,
            out_w: 2,
        };
        let x = [
            1.0f64, 5.0, 2.0, 0.0, 9.0, 3.0, 4.0, 7.0, 7.0, 9.0, 8.0, 8.0, 8.0, 8.0, 8.0,
        ];
        let (mut out, mut argmax) = ([0.0; 2], [0u32; 2]);
        g.forward(&x, &mut out, &mut argmax);
        assert_eq!(out, [5.0, 7.0]);
        // The tie between positions 7 and 8 goes to the first.
        assert_eq!(argmax, [1, 7]);
        let mut dx = [f64::NAN; 15];
        g.backward(&[10.0, 20.0], &argmax, &mut dx);
        let mut expected = [0.0; 15];
        expected[1] = 10.0;
        expected[7] = 20.0;
        assert_eq!(dx, expected);
    }

    #[test]
    fn the_2x2_path_agrees_with_the_general_one() {
        let g = PoolGeometry {
            channels: 3,
            in_h: 7,
            in_w: 9,
            size: 2,
            out_h: 3,
            out_w: 4,
        };
        let x: Vec<f64> = (0..2 * 3 * 63).map(|i| ((i * 37) % 101) as f64).collect();
        let n = 2 * 3 * 12;
        let (mut fast, mut general) = (vec![0.0; n], vec![0.0; n]);
        let (mut fast_at, mut general_at) = (vec![0u32; n], vec![0u32; n]);
        g.forward_2x2(&x, &mut fast, &mut fast_at);
        g.forward_any(&x, &mut general, &mut general_at);
        assert_eq!((fast, fast_at), (general, general_at));
    }
}
