//! One layer of a layer stack, as a person writes it in a job file: `"conv2d 32 3"`,
//! `"max_pool2d 2"`, `"flatten"`, `"dense 64"`, `"relu"`, `"dropout 0.5"`.
//!
//! | text | PyTorch | parameters |
//! |---|---|---|
//! | `dense N` | `nn.Linear(in, N)` | `weight [N, in]`, `bias [N]` |
//! | `conv2d C K [stride=S] [padding=P]` | `nn.Conv2d(in, C, K, stride=S, padding=P)` | `weight [C, in, K, K]`, `bias [C]` |
//! | `max_pool2d K` | `nn.MaxPool2d(K)` (stride K) | none |
//! | `flatten` | `nn.Flatten()` | none |
//! | `relu`, `tanh`, `sigmoid` | `nn.ReLU()`, `nn.Tanh()`, `nn.Sigmoid()` | none |
//! | `dropout P` | `nn.Dropout(P)` | none |
//!
//! Stride defaults to 1 and padding to 0, as in PyTorch. A layer is serialised back to
//! the same text, so a job round-trips through its plan.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One layer of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LayerSpec {
    /// Affine map of a flat input to `units` outputs.
    Dense {
        /// Output width.
        units: usize,
    },
    /// 2-D convolution (cross-correlation, as PyTorch) of an image input.
    Conv2d {
        /// Output channels.
        channels: usize,
        /// Square kernel side.
        kernel: usize,
        /// Step between kernel positions, at least 1.
        stride: usize,
        /// Zeros added on every side of the input.
        padding: usize,
    },
    /// The maximum over `size × size` windows, stride `size`, no padding.
    MaxPool2d {
        /// Window side and stride.
        size: usize,
    },
    /// An image `(C, H, W)` read as `C·H·W` features, in that order.
    Flatten,
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// During training, each value is zeroed with probability `rate` and the others
    /// scaled by `1 / (1 - rate)`; the identity in evaluation.
    Dropout {
        /// Probability of zeroing, in `[0, 1)`.
        rate: f32,
    },
}

impl LayerSpec {
    /// The layer's keyword (`"conv2d"`).
    #[must_use]
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::Dense { .. } => "dense",
            Self::Conv2d { .. } => "conv2d",
            Self::MaxPool2d { .. } => "max_pool2d",
            Self::Flatten => "flatten",
            Self::Relu => "relu",
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
            Self::Dropout { .. } => "dropout",
        }
    }

    /// True for the layers that hold a weight and a bias.
    #[must_use]
    pub fn has_parameters(&self) -> bool {
        matches!(self, Self::Dense { .. } | Self::Conv2d { .. })
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Dense { units } => write!(f, "dense {units}"),
            Self::Conv2d {
                channels,
                kernel,
                stride,
                padding,
            } => {
                write!(f, "conv2d {channels} {kernel}")?;
                if stride != 1 {
                    write!(f, " stride={stride}")?;
                }
                if padding != 0 {
                    write!(f, " padding={padding}")?;
                }
                Ok(())
            }
            Self::MaxPool2d { size } => write!(f, "max_pool2d {size}"),
            Self::Dropout { rate } => write!(f, "dropout {rate}"),
            Self::Flatten | Self::Relu | Self::Tanh | Self::Sigmoid => f.write_str(self.keyword()),
        }
    }
}

impl From<LayerSpec> for String {
    fn from(layer: LayerSpec) -> Self {
        layer.to_string()
    }
}

impl TryFrom<String> for LayerSpec {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// The layer forms, listed in parse errors.
const FORMS: &str = "dense N, conv2d C K [stride=S] [padding=P], max_pool2d K, flatten, \
                     relu, tanh, sigmoid, dropout P";

impl FromStr for LayerSpec {
    type Err = String;

    /// Parses the text form; the error quotes the text and says what was expected.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let keyword = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let bad = |why: &str| format!("{text:?}: {why}");
        let count = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(bad(&format!(
                    "{keyword} takes {n} argument(s), got {}",
                    args.len()
                )))
            }
        };
        let positive = |name: &str, word: &str| -> Result<usize, String> {
            match word.parse::<usize>() {
                Ok(v) if v > 0 => Ok(v),
                _ => Err(bad(&format!(
                    "{name} must be a positive integer, got {word:?}"
                ))),
            }
        };
        match keyword {
            "dense" => {
                count(1)?;
                Ok(Self::Dense {
                    units: positive("units", args[0])?,
                })
            }
            "conv2d" => {
                if args.len() < 2 {
                    return Err(bad(
                        "conv2d takes channels and kernel size, e.g. conv2d 32 3",
                    ));
                }
                let (mut stride, mut padding) = (1, 0);
                for option in &args[2..] {
                    match option.split_once('=') {
                        Some(("stride", v)) => stride = positive("stride", v)?,
                        Some(("padding", v)) => {
                            padding = v.parse().map_err(|_| {
                                bad(&format!("padding must be an integer, got {v:?}"))
                            })?;
                        }
                        _ => {
                            return Err(bad(&format!(
                                "unknown conv2d option {option:?}, expected stride=S or padding=P"
                            )));
                        }
                    }
                }
                Ok(Self::Conv2d {
                    channels: positive("channels", args[0])?,
                    kernel: positive("kernel", args[1])?,
                    stride,
                    padding,
                })
            }
            "max_pool2d" => {
                count(1)?;
                Ok(Self::MaxPool2d {
                    size: positive("size", args[0])?,
                })
            }
            "dropout" => {
                count(1)?;
                match args[0].parse::<f32>() {
                    Ok(rate) if (0.0..1.0).contains(&rate) => Ok(Self::Dropout { rate }),
                    _ => Err(bad(&format!(
                        "the rate must be in [0, 1), got {:?}",
                        args[0]
                    ))),
                }
            }
            "flatten" | "relu" | "tanh" | "sigmoid" => {
                count(0)?;
                Ok(match keyword {
                    "flatten" => Self::Flatten,
                    "relu" => Self::Relu,
                    "tanh" => Self::Tanh,
                    _ => Self::Sigmoid,
                })
            }
            _ => Err(bad(&format!("unknown layer, expected one of: {FORMS}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for text in [
            "dense 64",
            "conv2d 32 3",
            "conv2d 8 5 stride=2 padding=1",
            "max_pool2d 2",
            "flatten",
            "relu",
            "tanh",
            "sigmoid",
            "dropout 0.25",
        ] {
            let layer: LayerSpec = text.parse().unwrap();
            assert_eq!(layer.to_string(), text);
        }
        assert_eq!(
            "conv2d 16 3 padding=1".parse::<LayerSpec>().unwrap(),
            LayerSpec::Conv2d {
                channels: 16,
                kernel: 3,
                stride: 1,
                padding: 1
            }
        );
    }

    #[test]
    fn bad_layers_are_refused_with_the_text_and_the_reason() {
        let err = |t: &str| t.parse::<LayerSpec>().unwrap_err();
        assert_eq!(err("dense"), "\"dense\": dense takes 1 argument(s), got 0");
        assert_eq!(
            err("dense 0"),
            "\"dense 0\": units must be a positive integer, got \"0\""
        );
        assert_eq!(
            err("dropout 1"),
            "\"dropout 1\": the rate must be in [0, 1), got \"1\""
        );
        assert_eq!(
            err("conv2d 8 3 dilation=2"),
            "\"conv2d 8 3 dilation=2\": unknown conv2d option \"dilation=2\", expected stride=S or padding=P"
        );
        assert!(err("lstm 4").starts_with("\"lstm 4\": unknown layer, expected one of: dense N"));
    }

    #[test]
    fn layers_are_serialised_as_their_text() {
        let layer: LayerSpec = "conv2d 4 3 stride=2".parse().unwrap();
        let json = serde_json::to_string(&layer).unwrap();
        assert_eq!(json, "\"conv2d 4 3 stride=2\"");
        assert_eq!(serde_json::from_str::<LayerSpec>(&json).unwrap(), layer);
    }
}
