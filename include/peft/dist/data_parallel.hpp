#pragma once
// Data-parallel training over MPI (target peft::dist, CMake option
// PEFT_WITH_MPI; Open MPI or MPICH): every rank holds the same model and
// takes its own share of each batch; after backward the trainable
// parameters' gradients are averaged across ranks, so every rank takes the
// same optimizer step. Only the adapters' gradients travel: 64 Ki floats
// (256 KiB) a step for LoRA r=8 on a 4096 x 4096 layer.
//
//   peft::dist::broadcast_parameters(params);      // once: every rank starts as rank 0
//   peft::dist::GradientAverager<float> average(params);
//   ... forward, backward on this rank's rows (loss averaged over them) ...
//   average.all();                                  // or start(g) per layer, then finish()
//   optimizer.step();
//
// The average equals the whole batch's gradient when every rank's loss is the
// mean over the same number of rows. Overlap: with groups (one per layer, in
// the order their backward finishes), start(g) hands a layer's gradients to
// MPI_Iallreduce while earlier layers still run backward; how much of it
// proceeds before finish() depends on the MPI library's asynchronous
// progress (Open MPI without a progress thread does most of it in the wait).

#if !defined(PEFT_WITH_MPI)
#error "peft/dist/data_parallel.hpp needs PEFT_WITH_MPI (link peft::dist)"
#endif

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <peft/core/error.hpp>
#include <peft/core/parameters.hpp>
#include <peft/core/types.hpp>
#include <peft/optim/param_set.hpp>

namespace peft::dist {

/// This process's rank in `comm` and the number of ranks.
///@{
inline int rank(MPI_Comm comm = MPI_COMM_WORLD) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}
inline int size(MPI_Comm comm = MPI_COMM_WORLD) {
  int n = 1;
  MPI_Comm_size(comm, &n);
  return n;
}
///@}

namespace detail {

template <class T>
MPI_Datatype mpi_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "peft::dist: float or double");
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

/// Throws peft::Error naming `call` unless `code` is MPI_SUCCESS (communicators
/// whose error handler is MPI_ERRORS_RETURN report failures this way; with
/// MPI's default handler a failure aborts the job before it gets here).
inline void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  ::peft::detail::raise("peft::dist: ", call, " failed: ", std::string(text, static_cast<std::size_t>(length)));
}

inline bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

inline void require_initialized(const char* who) {
  PEFT_REQUIRE(mpi_running(), who, ": expected MPI to be initialised (MPI_Init) and not finalised");
}

/// MPI counts are int: `body(offset, count)` over [0, total) in pieces of at
/// most INT_MAX elements (a full fine-tuning of a 7B stack has 2³¹ gradients).
template <class Body>
void in_int_sized_pieces(Index total, Body&& body) {
  for (Index offset = 0; offset < total; offset += INT_MAX)
    body(offset, static_cast<int>(std::min<Index>(INT_MAX, total - offset)));
}

}  // namespace detail

/// Sets every parameter of `params` to rank `root`'s values (one MPI_Bcast of
/// one packed buffer), so that all ranks start from the same adapters.
template <class T>
void broadcast_parameters(optim::ParamSet<T>& params, int root = 0, MPI_Comm comm = MPI_COMM_WORLD) {
  detail::require_initialized("broadcast_parameters");
  PEFT_REQUIRE(root >= 0 && root < size(comm), "broadcast_parameters: expected a root rank in [0, ", size(comm),
               "), got ", root);
  std::vector<T> buffer(static_cast<std::size_t>(params.num_params()));
  T* at = buffer.data();
  for (const auto& p : params.views()) at = std::copy(p.value.data(), p.value.data() + p.value.size(), at);
  detail::in_int_sized_pieces(static_cast<Index>(buffer.size()), [&](Index offset, int count) {
    detail::check(MPI_Bcast(buffer.data() + offset, count, detail::mpi_type<T>(), root, comm), "MPI_Bcast");
  });
  const T* from = buffer.data();
  for (auto& p : params.views()) {
    std::copy(from, from + p.value.size(), p.value.data());
    from += p.value.size();
  }
}

/// Averages the gradients of a set of parameters across the ranks of a
/// communicator, through one buffer allocated once: all() in one
/// MPI_Allreduce, or start(g) per group (MPI_Iallreduce) and finish().
/// Every rank constructs it together (the constructor checks, collectively,
/// that all ranks have the same groups of the same sizes).
template <class T>
class GradientAverager {
 public:
  /// One group holding every parameter of `params`.
  explicit GradientAverager(optim::ParamSet<T>& params, MPI_Comm comm = MPI_COMM_WORLD)
      : GradientAverager(std::vector<std::vector<Parameter<T>>>{params.views()}, comm) {}

  /// Groups in the order their gradients become final (the layers' backward
  /// order: last layer first). A tensor in several groups (LoRTA's shared
  /// factors) is sent once, with the last group that holds it, when every
  /// layer using it has added its gradient. Throws peft::Error on every rank
  /// when the ranks' groups differ in number or sizes (different models).
  GradientAverager(std::vector<std::vector<Parameter<T>>> groups, MPI_Comm comm = MPI_COMM_WORLD)
      : comm_(comm), groups_(groups.size()) {
    detail::require_initialized("GradientAverager");
    std::map<const T*, std::size_t> last_group;  // tensor address -> last group holding it
    for (std::size_t g = 0; g < groups.size(); ++g)
      for (const auto& p : groups[g]) last_group[p.grad.data()] = g;
    std::map<const T*, bool> placed;
    Index offset = 0;
    for (std::size_t g = 0; g < groups.size(); ++g) {
      groups_[g].begin = offset;
      for (auto& p : groups[g])
        if (last_group[p.grad.data()] == g && !placed[p.grad.data()]) {
          placed[p.grad.data()] = true;
          groups_[g].tensors.push_back({p.grad.data(), p.grad.size()});
          offset += p.grad.size();
        }
      groups_[g].end = offset;
    }
    buffer_.resize(static_cast<std::size_t>(offset));
    // Ranks with different models would run collectives of different sizes:
    // compare the layout (count, groups, a hash of the group sizes) first.
    std::uint64_t hash = 1469598103934665603ULL;
    for (const auto& g : groups_) hash = (hash ^ static_cast<std::uint64_t>(g.end - g.begin)) * 1099511628211ULL;
    const long long layout[3] = {static_cast<long long>(offset), static_cast<long long>(groups_.size()),
                                 static_cast<long long>(hash >> 1)};
    long long lowest[3], highest[3];
    detail::check(MPI_Allreduce(layout, lowest, 3, MPI_LONG_LONG, MPI_MIN, comm_), "MPI_Allreduce");
    detail::check(MPI_Allreduce(layout, highest, 3, MPI_LONG_LONG, MPI_MAX, comm_), "MPI_Allreduce");
    PEFT_REQUIRE(std::equal(lowest, lowest + 3, highest), "GradientAverager: the ranks' parameters differ (",
                 offset, " gradients in ", groups_.size(), " group(s) here, between ", lowest[0], " and ", highest[0],
                 " across ranks); expected every rank to build the same model");
  }

  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;
  /// Waits for requests left in flight (an exception between start() and
  /// finish() on every rank). A failure on one rank only cannot be recovered
  /// from here: end the job with MPI_Abort.
  ~GradientAverager() {
    if (!detail::mpi_running()) return;
    for (auto& g : groups_)
      for (auto& request : g.requests)
        if (request != MPI_REQUEST_NULL) MPI_Wait(&request, MPI_STATUS_IGNORE);
  }

  std::size_t groups() const { return groups_.size(); }  ///< number of groups
  Index count() const { return static_cast<Index>(buffer_.size()); }  ///< scalars sent per step

  /// Starts averaging group g's gradients (MPI_Iallreduce); they must not
  /// change until finish(). Throws peft::Error for a group out of range or already started.
  void start(std::size_t g) {
    PEFT_REQUIRE(g < groups_.size(), "GradientAverager::start: expected a group in [0, ", groups_.size(), "), got ", g);
    Group& group = groups_[g];
    PEFT_REQUIRE(!group.started, "GradientAverager::start: group ", g,
                 " was already started in this step (finish() ends a step)");
    T* at = buffer_.data() + group.begin;
    for (const auto& t : group.tensors) at = std::copy(t.data, t.data + t.size, at);
    group.started = true;
    group.requests.clear();  // no allocation once a step has run: the capacity stays
    detail::in_int_sized_pieces(group.end - group.begin, [&](Index offset, int count) {
      group.requests.push_back(MPI_REQUEST_NULL);
      detail::check(MPI_Iallreduce(MPI_IN_PLACE, buffer_.data() + group.begin + offset, count, detail::mpi_type<T>(),
                                   MPI_SUM, comm_, &group.requests.back()),
                    "MPI_Iallreduce");
    });
  }

  /// Starts every group not started yet, waits for all, and writes the
  /// averages (sum / ranks) back into the gradients.
  void finish() {
    for (std::size_t g = 0; g < groups_.size(); ++g)
      if (!groups_[g].started) start(g);
    const T scale = T(1) / static_cast<T>(size(comm_));
    for (auto& group : groups_) {
      for (auto& request : group.requests)
        if (request != MPI_REQUEST_NULL) detail::check(MPI_Wait(&request, MPI_STATUS_IGNORE), "MPI_Wait");
      const T* from = buffer_.data() + group.begin;
      for (const auto& t : group.tensors) {
        for (Index i = 0; i < t.size; ++i) t.data[i] = from[i] * scale;
        from += t.size;
      }
      group.started = false;
    }
  }

  /// Averages every gradient now: one MPI_Allreduce over all groups.
  void all() {
    for (const auto& group : groups_)
      PEFT_REQUIRE(!group.started, "GradientAverager::all: a step begun with start() must end with finish()");
    T* at = buffer_.data();
    for (const auto& group : groups_)
      for (const auto& t : group.tensors) at = std::copy(t.data, t.data + t.size, at);
    detail::in_int_sized_pieces(static_cast<Index>(buffer_.size()), [&](Index offset, int count) {
      detail::check(MPI_Allreduce(MPI_IN_PLACE, buffer_.data() + offset, count, detail::mpi_type<T>(), MPI_SUM, comm_),
                    "MPI_Allreduce");
    });
    const T scale = T(1) / static_cast<T>(size(comm_));
    const T* from = buffer_.data();
    for (const auto& group : groups_)
      for (const auto& t : group.tensors) {
        for (Index i = 0; i < t.size; ++i) t.data[i] = from[i] * scale;
        from += t.size;
      }
  }

 private:
  struct Slice {
    T* data;
    Index size;
  };
  struct Group {
    std::vector<Slice> tensors;
    Index begin = 0, end = 0;  // its range of buffer_
    std::vector<MPI_Request> requests;  // one per INT_MAX-sized piece (one in practice)
    bool started = false;
  };
  MPI_Comm comm_;
  std::vector<Group> groups_;
  std::vector<T> buffer_;
};

/// Runs `save` (e.g. a save_peft call) on rank `root` only, then lets every
/// rank go on once it is done; a failure on the root is thrown on every rank
/// (as peft::Error with the root's message), so no rank waits forever.
inline void on_root(const std::function<void()>& save, int root = 0, MPI_Comm comm = MPI_COMM_WORLD) {
  detail::require_initialized("on_root");
  PEFT_REQUIRE(root >= 0 && root < size(comm), "on_root: expected a root rank in [0, ", size(comm), "), got ", root);
  std::string failure;
  if (rank(comm) == root) {
    try {
      save();
    } catch (const std::exception& e) {
      failure = e.what();
      if (failure.empty()) failure = "unknown error";
    } catch (...) {  // whatever it throws, the other ranks must hear of it
      failure = "an exception that is not a std::exception";
    }
  }
  int length = static_cast<int>(failure.size());
  detail::check(MPI_Bcast(&length, 1, MPI_INT, root, comm), "MPI_Bcast");
  failure.resize(static_cast<std::size_t>(length));
  if (length > 0) detail::check(MPI_Bcast(failure.data(), length, MPI_CHAR, root, comm), "MPI_Bcast");
  PEFT_REQUIRE(failure.empty(), "peft::dist::on_root: rank ", root, " failed: ", failure);
}

}  // namespace peft::dist
