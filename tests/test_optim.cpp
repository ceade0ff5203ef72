// Optimizers against hand-computed PyTorch updates, clipping, schedules, and
// one optimizer over several adapters including shared LoRTA factors.
#include <gtest/gtest.h>

#include <cmath>

#include <peft/peft.hpp>

#include "test_util.hpp"

namespace peft::test {
namespace {

/// One 1 x 2 tensor with the given value, its gradient set per step.
struct Scalars : OwnsParameters<double> {
  Scalars(double a, double b) {
    params_.add("w", {2});
    params_.value(0) << a, b;
  }
  void set_grad(double a, double b) { params_.grad(0) << a, b; }
  double value(int i) const { return params_.value(0)(0, i); }
};

TEST(SGD, PlainMomentumAndNesterovStepsMatchPyTorch) {
  Scalars plain(1.0, -2.0), momentum(1.0, -2.0), nesterov(1.0, -2.0), decay(1.0, -2.0);
  optim::SGD<double> a({plain.parameters()}, {.lr = 0.1});
  optim::SGD<double> b({momentum.parameters()}, {.lr = 0.1, .momentum = 0.9});
  optim::SGD<double> c({nesterov.parameters()}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  optim::SGD<double> d({decay.parameters()}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.5, .weight_decay = 0.1});
  for (auto* s : {&plain, &momentum, &nesterov, &decay}) s->set_grad(0.5, 1.0);
  a.step(), b.step(), c.step(), d.step();
  for (auto* s : {&plain, &momentum, &nesterov, &decay}) s->set_grad(0.25, -1.0);
  a.step(), b.step(), c.step(), d.step();
  // plain: 1 − 0.1·0.5 − 0.1·0.25
  EXPECT_NEAR(plain.value(0), 0.925, 1e-15);
  // momentum: b1 = 0.5 → 0.95; b2 = 0.9·0.5 + 0.25 = 0.7 → 0.88
  EXPECT_NEAR(momentum.value(0), 0.88, 1e-15);
  EXPECT_NEAR(momentum.value(1), -2.0 - 0.1 * 1.0 - 0.1 * (0.9 * 1.0 - 1.0), 1e-15);
  // nesterov: g1 = 0.5 + 0.9·0.5 → 0.905; b2 = 0.7, g2 = 0.25 + 0.63 = 0.88 → 0.817
  EXPECT_NEAR(nesterov.value(0), 0.817, 1e-15);
  // weight decay then dampening: g1 = 0.5 + 0.1·1 = 0.6, b1 = 0.6 → p1 = 0.94;
  // g2 = 0.25 + 0.094 = 0.344, b2 = 0.54 + 0.172 = 0.712 → p2 = 0.8688
  EXPECT_NEAR(decay.value(0), 0.8688, 1e-15);
  EXPECT_EQ(d.steps(), 2);
}

TEST(AdamW, StepsMatchTheClosedFormForSeveralSteps) {
  Scalars s(1.0, -0.5);
  const optim::AdamWOptions o{.lr = 0.1, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-3, .weight_decay = 0.05};
  optim::AdamW<double> adam({s.parameters()}, o);
  const double grads[4][2] = {{0.5, -1.0}, {-0.25, 2.0}, {1.5, 0.0}, {0.1, -0.3}};
  long double p[2] = {1.0L, -0.5L}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int t = 1; t <= 4; ++t) {
    s.set_grad(grads[t - 1][0], grads[t - 1][1]);
    adam.step();
    for (int i = 0; i < 2; ++i) {  // the textbook form: decoupled decay, bias-corrected moments
      const long double g = grads[t - 1][i];
      p[i] *= 1.0L - 0.1L * 0.05L;
      m[i] = 0.8L * m[i] + 0.2L * g;
      v[i] = 0.95L * v[i] + 0.05L * g * g;
      const long double m_hat = m[i] / (1.0L - std::pow(0.8L, t)), v_hat = v[i] / (1.0L - std::pow(0.95L, t));
      p[i] -= 0.1L * m_hat / (std::sqrt(v_hat) + 1e-3L);
      EXPECT_NEAR(s.value(i), static_cast<double>(p[i]), 1e-14) << "step " << t << " entry " << i;
    }
  }
  // The first step's size is lr whatever the gradient's scale (here g = 0.5, eps small).
  Scalars first(1.0, 1.0);
  optim::AdamW<double> fresh({first.parameters()}, {.lr = 0.1, .weight_decay = 0.01});
  first.set_grad(0.5, 0.5);
  fresh.step();
  EXPECT_NEAR(first.value(0), 0.999 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-15);
}

TEST(ClipGradNorm, ScalesToTheMaxNormExactlyAndOnlyWhenAbove) {
  Scalars a(0, 0), b(0, 0);
  optim::ParamSet<double> set{a.parameters(), b.parameters()};
  a.set_grad(3.0, 0.0);
  b.set_grad(0.0, 4.0);
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm(set, 1.0), 5.0);
  EXPECT_DOUBLE_EQ(a.parameter_block().grad(0)(0, 0), 3.0 / (5.0 + 1e-6));
  EXPECT_DOUBLE_EQ(b.parameter_block().grad(0)(0, 1), 4.0 / (5.0 + 1e-6));
  a.set_grad(0.3, 0.0);
  b.set_grad(0.0, 0.4);
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm(set, 1.0), 0.5);
  EXPECT_EQ(a.parameter_block().grad(0)(0, 0), 0.3);
  EXPECT_PEFT_ERROR(optim::clip_grad_norm(set, 0.0), "max_norm must be a finite value > 0");
}

TEST(Schedule, WarmupThenLinearOrCosine) {
  const optim::Schedule cosine(110, 10, optim::Decay::Cosine), linear(110, 10, optim::Decay::Linear);
  EXPECT_DOUBLE_EQ(cosine.factor(0), 0.0);
  EXPECT_DOUBLE_EQ(cosine.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(cosine.factor(10), 1.0);
  EXPECT_NEAR(cosine.factor(60), 0.5, 1e-15);
  EXPECT_NEAR(cosine.factor(35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
  EXPECT_NEAR(cosine.factor(110), 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(linear.factor(60), 0.5);
  EXPECT_DOUBLE_EQ(linear.factor(110), 0.0);
  EXPECT_DOUBLE_EQ(optim::Schedule(10, 0, optim::Decay::Constant).factor(7), 1.0);
  EXPECT_PEFT_ERROR(optim::Schedule(10, 11), "warmup_steps must be in [0, 10], got 11");
  EXPECT_PEFT_ERROR(optim::Schedule(10, 2).factor(-1), "Schedule::factor: step must be >= 0, got -1");
}

TEST(ParamSet, SharedLoRTAFactorsAreSteppedOnce) {
  auto factors = std::make_shared<LoRTAFactors<double>>(LoRTAConfig{.r = 2, .d = 8, .layers = 2, .matrix_types = 1});
  LoRTA<double> l0(factors, 0, 0), l1(factors, 1, 0);
  LoRA<double> lora(8, 8, {.r = 2});
  optim::ParamSet<double> set{l0.parameters(), l1.parameters(), lora.parameters()};
  EXPECT_EQ(set.size(), 5u + 2u);
  EXPECT_EQ(set.num_params(), factors->num_params() + lora.num_params());
  factors->parameter_block().grads().setOnes();
  const Vector<double> before = factors->parameter_block().values();
  optim::SGD<double> sgd(set, {.lr = 0.5});
  sgd.step();
  EXPECT_LT((factors->parameter_block().values() - (before.array() - 0.5).matrix()).norm(), 1e-15);
}

TEST(Optimizers, RejectBadOptions) {
  Scalars s(0, 0);
  EXPECT_PEFT_ERROR(optim::AdamW<double>({s.parameters()}, {.beta1 = 1.0}), "betas must be in [0, 1)");
  EXPECT_PEFT_ERROR(optim::AdamW<double>({s.parameters()}, {.lr = -1}), "lr must be a finite value >= 0");
  EXPECT_PEFT_ERROR(optim::SGD<double>({s.parameters()}, {.nesterov = true}), "nesterov needs momentum > 0");
}

}  // namespace
}  // namespace peft::test
