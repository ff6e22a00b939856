//! TODO(model helper)
