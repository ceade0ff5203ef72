#pragma once
// One of Hugging Face PEFT's golden cases (tests/golden/peft/<case>): a model
// y = fc2(fc1(x)) whose layers the test wraps with its adapter, checked
// against PEFT's y, dx, parameter gradients, merged weights and y_merged.

#include <functional>
#include <string>
#include <vector>

#include <peft/core/adapted.hpp>
#include <peft/io/safetensors.hpp>

#include "test_util.hpp"

namespace peft::test {

class GoldenCase {
 public:
  explicit GoldenCase(const std::string& name)
      : dir_(kGoldenDir + "/peft/" + name + "/"),
        io_(io::read_safetensors(dir_ + "io.safetensors")),
        adapter_(io::read_safetensors(dir_ + "adapter_model.safetensors")) {}

  const io::Safetensors& io() const { return io_; }
  template <class T = double>
  Linear<T> base(const std::string& module) const {
    return Linear<T>(io_.at("base." + module + ".weight").template to_matrix<T>(),
                     io_.at("base." + module + ".bias").template to_vector<T>());
  }
  /// A tensor of the saved adapter file: base_model.model.<module>.<name>.
  template <class T = double>
  Matrix<T> saved(const std::string& module, const std::string& name) const {
    return adapter_.at("base_model.model." + module + "." + name).template to_matrix<T>();
  }

  /// Runs the two-layer model and compares with PEFT. `grad_key(module, name)`
  /// gives the io file's key of a parameter's gradient.
  /// Layer: Adapted<A> or the type-erased AdaptedLayer<T>.
  template <class Layer>
  void check(Layer& fc1, Layer& fc2, double tol,
             const std::function<std::string(const std::string&, std::string_view)>& grad_key) {
    using T = typename Layer::Scalar;
    const Matrix<T> x = io_.at("x").template to_matrix<T>();
    EXPECT_LT(max_rel_diff(fc2.forward(fc1.forward(x)), io_.at("y").template to_matrix<double>()), tol) << "y";
    const Matrix<T> dx = fc1.backward(fc2.backward(io_.at("dy").template to_matrix<T>()));
    EXPECT_LT(max_rel_diff(dx, io_.at("dx").template to_matrix<double>()), tol) << "dx";
    std::vector<std::pair<std::string, Layer*>> layers{{"fc1", &fc1}, {"fc2", &fc2}};
    for (auto& [module, layer] : layers)
      for (auto& p : parameters_of(*layer)) {
        const std::string key = "grad.base_model.model." + module + "." + grad_key(module, p.name);
        EXPECT_LT(max_rel_diff(p.grad, io_.at(key).template to_matrix<double>()), tol) << key;
      }
    for (auto& [module, layer] : layers) {
      layer->merge();
      EXPECT_LT(max_rel_diff(layer->base().weight(), io_.at("merged." + module + ".weight").template to_matrix<double>()), tol)
          << module;
      EXPECT_LT(max_rel_diff(layer->base().bias().transpose(), io_.at("merged." + module + ".bias").template to_matrix<double>()),
                tol)
          << module;
    }
    EXPECT_LT(max_rel_diff(fc2.forward(fc1.forward(x)), io_.at("y_merged").template to_matrix<double>()), tol) << "y_merged";
  }

 private:
  template <class Layer>
  static auto parameters_of(Layer& layer) {
    if constexpr (requires { layer.adapter(); }) return layer.adapter().parameters();
    else return layer.parameters();
  }

  std::string dir_;
  io::Safetensors io_, adapter_;
};

}  // namespace peft::test
