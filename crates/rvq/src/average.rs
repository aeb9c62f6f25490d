//! An exponential moving average of a network's weights, for evaluation: training follows the
//! noisy last step, the average a smoothed path through the last few hundred. Kept on the
//! inference device beside the trained network, matched to it parameter by parameter through
//! burn's parameter ids, which an optimizer step, `valid()` and a checkpoint's reload all
//! keep.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// `average · decay + current · (1 − decay)`, parameter by parameter, and how many of
/// `current`'s parameters found no counterpart in `average` (0 unless the two are not copies
/// of one network). A parameter of `average` with no counterpart is left as it is.
pub fn blend<M: Module>(average: M, current: &M, decay: f32) -> (M, usize) {
    let mut values = Collect(HashMap::new());
    current.visit(&mut values);
    let mut blend = Blend {
        values: values.0,
        decay,
    };
    let average = average.map(&mut blend);
    (average, blend.values.len())
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
        let (avg, unmatched) = blend(a.clone(), &b, 0.75);
        assert_eq!(unmatched, 0);
        let (wa, wavg): (Vec<f32>, Vec<f32>) = (
            a.weight.val().into_data().try_to_vec::<f32>().unwrap(),
            avg.weight.val().into_data().try_to_vec::<f32>().unwrap(),
        );
        for (x, y) in wa.iter().zip(&wavg) {
            assert!((y - (x + 0.25)).abs() < 1e-6, "{x} → {y}");
        }
        // The bias was not changed in b: the average keeps it.
        assert_eq!(
            avg.bias.as_ref().unwrap().val().into_data(),
            a.bias.as_ref().unwrap().val().into_data()
        );
        // A network that is not a copy matches nothing, and says so.
        let other: Linear = LinearConfig::new(2, 3).init(&device);
        assert_eq!(blend(a, &other, 0.5).1, 2);
    }

    #[test]
    fn an_optimizer_step_keeps_the_parameters_matched() {
        use burn::optim::{AdamConfig, GradientsParams};
        let device = Device::flex().autodiff();
        let net: Linear = LinearConfig::new(2, 3).init(&device);
        let start = net.valid();
        let mut optim = AdamConfig::new().init();
        let x = Tensor::<2>::ones([4, 2], &device);
        let loss = net.forward(x).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let net = optim.step(0.1, net, grads);
        let (avg, unmatched) = blend(start.clone(), &net.valid(), 0.5);
        assert_eq!(unmatched, 0);
        assert!(avg.weight.val().into_data() != start.weight.val().into_data());
    }
}
