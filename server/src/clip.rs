//! TODO(optim helper)
