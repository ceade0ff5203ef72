#pragma once
// peft::Error and the checks that raise it. Messages name the function, what
// was expected and what was given, e.g.
//   "LoRA: alpha must be a finite value > 0, got -2".

#include <cassert>
#include <sstream>
#include <stdexcept>
#include <string>

#include <peft/core/types.hpp>

namespace peft {

/// Thrown for invalid configurations, shape mismatches and malformed files.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

template <class... Parts>
[[noreturn]] inline void raise(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

/// "5 x 48", the way shapes appear in messages.
inline std::string shape_str(Index rows, Index cols) {
  return std::to_string(rows) + " x " + std::to_string(cols);
}

}  // namespace detail
}  // namespace peft

/// Raises peft::Error with the concatenated message parts when `cond` fails.
/// The parts are only formatted on failure, so the check is cheap on hot paths.
#define PEFT_REQUIRE(cond, ...)                         \
  do {                                                  \
    if (!(cond)) ::peft::detail::raise(__VA_ARGS__);    \
  } while (false)

/// Internal invariant of a hot path; define PEFT_ASSERT before including peft
/// headers to route it elsewhere (e.g. to throw in a fuzzing build).
#ifndef PEFT_ASSERT
#define PEFT_ASSERT(cond) assert(cond)
#endif
