#pragma once
// Resumable training: everything a run needs besides the adapters' weights
// (which save_peft writes) to continue bit for bit after being stopped:
// the optimizer's state (AdamW's moments and step count, SGD's momentum
// buffers, the current lr), the position in the schedule (the next step),
// and the state of every random generator the run draws from (the data
// order, each adapter's dropout masks: Adapted::random_streams()).
//
// One safetensors file, usually beside the adapter directory:
//   tensors   "optimizer.<buffer>.<i>" (F32 or F64, the parameter's
//             rows x cols, i in the optimizer's params() order) and
//             "rng.<name>" (U64, the generator's 4 state words);
//   metadata  "format" = "peft-cpp training state", "version" = "1",
//             "optimizer", "optimizer.steps", "optimizer.lr" (17 digits,
//             exact), "step", and "parameters": the parameters' names and
//             shapes as JSON, checked on load.

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <peft/core/error.hpp>
#include <peft/core/random.hpp>
#include <peft/core/types.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/optim/optimizer_state.hpp>

namespace peft::io {

/// The random generators a run draws from, by name: saved and restored together.
using RandomStreams = std::vector<std::pair<std::string, Rng*>>;

/// Appends `streams` (e.g. layer.random_streams()) as "<prefix>.0", "<prefix>.1", ...
inline void add_random_streams(RandomStreams& out, const std::string& prefix, const std::vector<Rng*>& streams) {
  for (std::size_t i = 0; i < streams.size(); ++i) out.emplace_back(prefix + "." + std::to_string(i), streams[i]);
}

namespace detail {

inline constexpr const char* kTrainingStateFormat = "peft-cpp training state";

template <class T>
constexpr const char* float_dtype() {
  return sizeof(T) == 4 ? "F32" : "F64";
}

/// The parameters' names and shapes as JSON: what a checkpoint was written for.
template <class Optimizer>
std::string parameter_list(Optimizer& optimizer) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& p : optimizer.params().views())
    list.push_back({{"name", std::string(p.name)}, {"shape", {p.value.rows(), p.value.cols()}}});
  return list.dump();
}

inline std::string exact_decimal(double x) {
  char text[40];
  std::snprintf(text, sizeof text, "%.17g", x);
  return text;
}

inline const std::string& metadata_entry(const Safetensors& file, const std::string& who, const char* key) {
  const auto it = file.metadata().find(key);
  if (it == file.metadata().end()) ::peft::detail::raise(who, ": expected metadata '", key, "', found none");
  return it->second;
}

inline std::int64_t metadata_integer(const Safetensors& file, const std::string& who, const char* key) {
  const std::string& text = metadata_entry(file, who, key);
  std::size_t used = 0;
  long long value = -1;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 0)
    ::peft::detail::raise(who, ": expected metadata '", key, "' to be an integer >= 0, got '", text, "'");
  return value;
}

}  // namespace detail

/// Writes `optimizer`'s state, the step to resume at (`next_step`, e.g. the
/// schedule position) and every generator in `streams` to `file`, through a
/// temporary file renamed over it, so a crash while saving leaves the previous
/// checkpoint whole. Throws peft::Error when the file cannot be written or two
/// streams share a name.
template <class Optimizer>
void save_training_state(const std::filesystem::path& file, Optimizer& optimizer, Index next_step,
                         const RandomStreams& streams = {}) {
  using T = typename Optimizer::Scalar;
  const std::string who = "save_training_state('" + file.string() + "')";
  PEFT_REQUIRE(next_step >= 0, who, ": expected next_step >= 0, got ", next_step);
  const optim::OptimizerState<T> state = optimizer.state();
  TensorMap tensors;
  for (const auto& [buffer, values] : state.buffers)
    for (std::size_t i = 0; i < values.size(); ++i)
      tensors.emplace("optimizer." + buffer + "." + std::to_string(i),
                      Tensor::from(values[i], {}, detail::float_dtype<T>()));
  for (const auto& [name, rng] : streams) {
    PEFT_REQUIRE(rng != nullptr, who, ": random stream '", name, "' is null");
    const std::array<std::uint64_t, 4> words = rng->state();
    Tensor t{"U64", {4}, std::vector<unsigned char>(sizeof words)};
    std::memcpy(t.data.data(), words.data(), sizeof words);  // little-endian on every platform we build for
    PEFT_REQUIRE(tensors.emplace("rng." + name, std::move(t)).second, who, ": two random streams are named '", name,
                 "'");
  }
  const Metadata metadata{{"format", detail::kTrainingStateFormat},
                          {"version", "1"},
                          {"optimizer", state.kind},
                          {"optimizer.steps", std::to_string(state.steps)},
                          {"optimizer.lr", detail::exact_decimal(state.lr)},
                          {"step", std::to_string(next_step)},
                          {"parameters", detail::parameter_list(optimizer)}};
  std::filesystem::path partial = file;
  partial += ".partial";
  write_safetensors(partial, tensors, metadata);
  std::error_code error;
  std::filesystem::rename(partial, file, error);
  PEFT_REQUIRE(!error, who, ": could not rename ", partial.string(), " to it: ", error.message());
}

/// Restores what save_training_state wrote into `optimizer` (same kind, same
/// parameters in the same order, same precision) and into every generator of
/// `streams` (exactly the names saved); returns the step to resume at.
/// Throws peft::Error naming the mismatch, and changes nothing, for a file
/// written for another optimizer, other parameters or other streams.
template <class Optimizer>
Index load_training_state(const std::filesystem::path& file, Optimizer& optimizer, const RandomStreams& streams = {}) {
  using T = typename Optimizer::Scalar;
  const std::string who = "load_training_state('" + file.string() + "')";
  const Safetensors saved = read_safetensors(file);
  const std::string& format = detail::metadata_entry(saved, who, "format");
  PEFT_REQUIRE(format == detail::kTrainingStateFormat, who, ": expected format '", detail::kTrainingStateFormat,
               "', got '", format, "'");
  const std::string& version = detail::metadata_entry(saved, who, "version");
  PEFT_REQUIRE(version == "1", who, ": expected version 1, got '", version, "'");
  const std::string& parameters = detail::metadata_entry(saved, who, "parameters");
  const std::string expected_parameters = detail::parameter_list(optimizer);
  PEFT_REQUIRE(parameters == expected_parameters, who, ": saved for parameters ", parameters,
               ", expected this optimizer's ", expected_parameters);

  optim::OptimizerState<T> state = optimizer.state();  // kind and buffer names; values replaced below
  const std::string& kind = detail::metadata_entry(saved, who, "optimizer");
  PEFT_REQUIRE(kind == state.kind, who, ": saved for a ", kind, " optimizer, expected ", state.kind);
  state.steps = detail::metadata_integer(saved, who, "optimizer.steps");
  const std::string& lr = detail::metadata_entry(saved, who, "optimizer.lr");
  std::size_t used = 0;
  try {
    state.lr = std::stod(lr, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != lr.size())
    ::peft::detail::raise(who, ": expected metadata 'optimizer.lr' to be a number, got '", lr, "'");
  std::size_t expected_tensors = streams.size();
  for (auto& [buffer, values] : state.buffers) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      const std::string name = "optimizer." + buffer + "." + std::to_string(i);
      PEFT_REQUIRE(saved.contains(name), who, ": expected tensor '", name, "', found none");
      const Tensor& t = saved.at(name);
      PEFT_REQUIRE(t.dtype == detail::float_dtype<T>(), who, ": tensor '", name, "' must be ",
                   detail::float_dtype<T>(), " (the optimizer's precision), got ", t.dtype);
      PEFT_REQUIRE(t.shape.size() == 2 && t.shape[0] == values[i].rows() && t.shape[1] == values[i].cols(), who,
                   ": tensor '", name, "' must be ", ::peft::detail::shape_str(values[i].rows(), values[i].cols()));
      values[i] = t.to_matrix<T>();
    }
    expected_tensors += values.size();
  }
  std::vector<std::array<std::uint64_t, 4>> words(streams.size());
  for (std::size_t s = 0; s < streams.size(); ++s) {
    const std::string name = "rng." + streams[s].first;
    PEFT_REQUIRE(streams[s].second != nullptr, who, ": random stream '", streams[s].first, "' is null");
    PEFT_REQUIRE(saved.contains(name), who, ": expected random stream '", streams[s].first, "', found none");
    const Tensor& t = saved.at(name);
    PEFT_REQUIRE(t.dtype == "U64" && t.shape == std::vector<std::int64_t>{4}, who, ": tensor '", name,
                 "' must be U64 of shape [4]");
    std::memcpy(words[s].data(), t.data.data(), sizeof(words[s]));
    PEFT_REQUIRE(words[s] != (std::array<std::uint64_t, 4>{}), who, ": random stream '", streams[s].first,
                 "' has an all-zero state");
  }
  PEFT_REQUIRE(saved.size() == expected_tensors, who, ": expected ", expected_tensors,
               " tensors (the optimizer's buffers and the streams asked for), found ", saved.size(),
               ": every saved random stream must be restored");
  const Index next_step = detail::metadata_integer(saved, who, "step");

  optimizer.load_state(state);  // validates, then assigns: nothing changed before this point
  for (std::size_t s = 0; s < streams.size(); ++s) streams[s].second->set_state(words[s]);
  return next_step;
}

}  // namespace peft::io
