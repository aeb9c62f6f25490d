//! An exponential moving average of a network's weights, for evaluation: training follows the
//! noisy last step, the average a smoothed path through the last few hundred. Kept on the
//! inference device beside the trained network, matched to it parameter by parameter through
//! burn's parameter ids (which an optimizer step keeps).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// `average · decay + current · (1 − decay)`, parameter by parameter. A parameter of
/// `average` with no counterpart in `current` is left as it is.
pub fn blend<M: Module>(average: M, current: &M, decay: f32) -> M {
    let mut values = Collect(HashMap::new());
    current.visit(&mut values);
    average.map(&mut Blend {
        values: values.0,
        decay,
    })
}

/// Every float parameter's value, flattened, by id.
struct Collect(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.insert(param.id, param.val().flatten(0, D - 1));
    }
}

struct Blend {
    values: HashMap<ParamId, Tensor<1>>,
    decay: f32,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.values.remove(&param.id) else {
            return param;
        };
        let decay = self.decay;
        param.map(|avg| {
            let dims = avg.dims();
            avg.mul_scalar(decay) + current.reshape(dims).mul_scalar(1.0 - decay)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn blends_each_parameter_with_its_counterpart() {
        let device = Device::flex();
        let a: Linear = LinearConfig::new(2, 3).init(&device);
        let mut b = a.clone();
        b.weight = b.weight.map(|w| w.add_scalar(1.0));
        let avg = blend(a.clone(), &b, 0.75);
        let (wa, wavg): (Vec<f32>, Vec<f32>) = (
            a.weight.val().into_data().try_to_vec::<f32>().unwrap(),
            avg.weight.val().into_data().try_to_vec::<f32>().unwrap(),
        );
        for (x, y) in wa.iter().zip(&wavg) {
            assert!((y - (x + 0.25)).abs() < 1e-6, "{x} → {y}");
        }
        // The bias was not changed in b: the average keeps it.
        assert_eq!(
            avg.bias.unwrap().val().into_data(),
            a.bias.unwrap().val().into_data()
        );
    }
}
