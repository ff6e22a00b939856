//! TEMPORARY stand-in (replaced by the model branch at merge).
#![allow(missing_docs)]
use downpour_core::{DataShape, Dataset, ModelSpec, ParamSet, ParameterLayout};

#[derive(Debug, thiserror::Error)]
#[error("model error")]
pub struct ModelError;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub mse: Option<f64>,
    pub samples: usize,
}

#[derive(Debug)]
pub struct Model {
    layout: ParameterLayout,
}
impl Model {
    pub fn new(spec: &ModelSpec, shape: &DataShape) -> Result<Self, ModelError> {
        Ok(Self {
            layout: spec.layout(shape).map_err(|_| ModelError)?,
        })
    }
    pub fn layout(&self) -> &ParameterLayout {
        &self.layout
    }
    pub fn loss_and_gradient(
        &self,
        _p: &ParamSet,
        _b: &Dataset,
        _g: &mut ParamSet,
    ) -> Result<f32, ModelError> {
        todo!()
    }
    pub fn evaluate(&self, _p: &ParamSet, _d: &Dataset) -> Result<Metrics, ModelError> {
        todo!()
    }
}
