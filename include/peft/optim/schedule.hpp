#pragma once
// Learning-rate schedules with linear warmup, as transformers'
// get_{linear,cosine}_schedule_with_warmup: the multiplier of the base lr at
// step t (0-based) of `total`:
//   warmup   t / warmup                             for t < warmup
//   linear   (total − t) / (total − warmup)        afterwards, down to 0
//   cosine   ½·(1 + cos(π·(t − warmup)/(total − warmup)))

#include <algorithm>
#include <cmath>
#include <numbers>

#include <peft/core/error.hpp>
#include <peft/core/types.hpp>

namespace peft::optim {

/// What follows the warmup: Constant (1), Linear (down to 0 at `total`), or Cosine (half a period, to 0).
enum class Decay { Constant, Linear, Cosine };

/// A learning-rate multiplier with linear warmup, as transformers'
/// get_{constant,linear,cosine}_schedule_with_warmup: lr_t = base lr · factor(t).
class Schedule {
 public:
  /// Throws peft::Error unless total_steps >= 1 and warmup_steps is in [0, total_steps].
  Schedule(Index total_steps, Index warmup_steps = 0, Decay decay = Decay::Cosine)
      : total_(total_steps), warmup_(warmup_steps), decay_(decay) {
    PEFT_REQUIRE(total_steps >= 1, "Schedule: total_steps must be >= 1, got ", total_steps);
    PEFT_REQUIRE(warmup_steps >= 0 && warmup_steps <= total_steps, "Schedule: warmup_steps must be in [0, ",
                 total_steps, "], got ", warmup_steps);
  }

  /// The lr multiplier at step t.
  double factor(Index t) const {
    PEFT_REQUIRE(t >= 0, "Schedule::factor: step must be >= 0, got ", t);
    if (t < warmup_) return static_cast<double>(t) / static_cast<double>(warmup_);
    if (decay_ == Decay::Constant || total_ == warmup_) return 1.0;
    const double progress = static_cast<double>(t - warmup_) / static_cast<double>(total_ - warmup_);
    if (decay_ == Decay::Linear) return std::max(0.0, 1.0 - progress);
    return 0.5 * (1.0 + std::cos(std::numbers::pi * std::min(progress, 1.0)));
  }

 private:
  Index total_, warmup_;
  Decay decay_;
};

}  // namespace peft::optim
