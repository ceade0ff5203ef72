#pragma once
// Helpers shared by the tests: seeded random data and per-precision tolerances.

#include <gtest/gtest.h>

#include <string>

#include <peft/core/random.hpp>
#include <peft/core/types.hpp>

namespace peft::test {

inline const std::string kGoldenDir = PEFT_GOLDEN_DIR;

/// Entries ~ U(-1, 1) from a fixed seed.
template <class T>
Matrix<T> random_matrix(Index rows, Index cols, std::uint64_t seed) {
  Rng rng(seed);
  Matrix<T> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(rng.uniform(-1.0, 1.0));
  return m;
}

/// Relative tolerance for comparing against a double-precision reference.
template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

/// max |a - b| / max(max |b|, 1).
template <class A, class B>
double max_rel_diff(const A& a, const B& b) {
  const double scale = std::max(1.0, b.template cast<double>().cwiseAbs().maxCoeff());
  return (a.template cast<double>() - b.template cast<double>()).cwiseAbs().maxCoeff() / scale;
}

/// Expects `statement` to throw peft::Error whose message contains `needle`.
#define EXPECT_PEFT_ERROR(statement, needle)                                              \
  do {                                                                                    \
    try {                                                                                 \
      statement;                                                                          \
      ADD_FAILURE() << "expected peft::Error containing \"" << (needle) << "\"";          \
    } catch (const ::peft::Error& e) {                                                    \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)                    \
          << "message: " << e.what() << "\nexpected to contain: " << (needle);           \
    }                                                                                     \
  } while (false)

using Precisions = ::testing::Types<float, double>;

}  // namespace peft::test
