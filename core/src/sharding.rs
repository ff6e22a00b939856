//! TODO(data helper): which training samples each worker owns, and the per-epoch batch order.
