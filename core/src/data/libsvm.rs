//! TODO(data helper)
