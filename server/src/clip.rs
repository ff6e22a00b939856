//! TEMPORARY stand-in (replaced by the optim branch at merge).
#![allow(missing_docs)]
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let total: f64 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&v| f64::from(v) * f64::from(v))
        .sum();
    let total = total.sqrt() as f32;
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        grads
            .iter_mut()
            .for_each(|g| g.iter_mut().for_each(|v| *v *= coef));
    }
    total
}
