#pragma once
// A small seedable generator with a fixed algorithm (xoshiro256**, seeded by
// splitmix64), so inits and dropout masks are the same on every platform and
// standard library, unlike std::*_distribution.

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

#include <peft/core/error.hpp>

namespace peft {

/// xoshiro256** seeded by splitmix64: the same sequence for a seed on every
/// platform and standard library.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }  ///< seeded like reseed(seed)

  /// Restarts the sequence: the state is four splitmix64 outputs from `seed`.
  void reseed(std::uint64_t seed) {
    for (auto& word : state_) word = splitmix64(seed);
  }

  /// The generator's whole state (four words), for checkpoints: a generator
  /// given it back with set_state() continues the same sequence.
  std::array<std::uint64_t, 4> state() const { return {state_[0], state_[1], state_[2], state_[3]}; }
  /// Restores a state from state(). Throws peft::Error for all zeros, which
  /// xoshiro256 can never reach (it would only ever draw 0).
  void set_state(const std::array<std::uint64_t, 4>& state) {
    PEFT_REQUIRE(state[0] != 0 || state[1] != 0 || state[2] != 0 || state[3] != 0,
                 "Rng::set_state: expected a state with a non-zero word, got all zeros");
    for (int i = 0; i < 4; ++i) state_[i] = state[i];
  }

  /// Next 64 uniformly distributed bits.
  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  /// Standard normal by Box-Muller (one value per call; the pair's twin is
  /// dropped to keep the generator's state the only state).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::uint64_t state_[4]{};
};

}  // namespace peft
