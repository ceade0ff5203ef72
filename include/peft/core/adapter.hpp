#pragma once
// The Adapter concept: what Adapted<A> needs from an adapter.
//
// An adapter changes a frozen Linear at up to three points, each a pair of
// member functions (forward, then backward in reverse order):
//   input edit   X -> X'        forward_input(Matrix& X)              in place
//                               backward_input(Matrix& dX)            dX' -> dX in place
//   additive     Y += Δ(X)      forward_delta(X, Matrix& Y)           adds Δ(X) into Y
//                               backward_delta(dY, Matrix& dX)        adds its dX term into dX
//   output edit  H -> H'        forward_output(Matrix& H)             in place
//                               backward_output(Matrix& dH)           dH' -> dH in place
// Backward functions add into the adapter's parameter gradients (+=). An
// adapter caches what its own backward needs during forward.
//
// Merging: an adapter with delta_weight() merges as W += ΔW; any other
// mergeable adapter provides merge_into(Linear&) / unmerge_from(Linear&).
//
// The base: an adapter whose output depends on the frozen W or b themselves
// (DoRA's ‖W + ΔW‖ row norms, its bias-free output edit) has use_base(const
// Linear&); Adapted calls it on construction and before every forward,
// backward, merge and unmerge, so the adapter may keep the pointer for that
// call only (Adapted may have moved since). An output edit of the form
// H' = f(H − b) + b says so with output_edit_passes_bias(): the base bias's
// gradient is then dY, not the edit's dH.
//
// Inference: an adapter also provides const versions of its edit points,
//   infer_input(Matrix& X) const, infer_delta(X, Matrix& Y) const,
//   infer_output(Matrix& H) const   (DoRA: infer_output(const Linear&, H) const),
// computing what forward_* computes in eval mode (no dropout) while keeping
// nothing for backward and writing no member: working memory comes from
// per-thread scratch (thread_matrix, core/scratch.hpp), so several threads may
// run them at once on one adapter. Adapted/MultiAdapted::infer use them.

#include <concepts>
#include <vector>

#include <peft/core/error.hpp>

#include <peft/core/linear.hpp>
#include <peft/core/random.hpp>
#include <peft/core/scratch.hpp>
#include <peft/core/types.hpp>

namespace peft {

/// Has forward_input/backward_input: edits X in place before the base layer.
template <class A>
concept EditsInput = requires(A& a, Matrix<typename A::Scalar>& m) {
  a.forward_input(m);
  a.backward_input(m);
};

/// Has forward_delta/backward_delta: adds Δ(X) into the base layer's output.
template <class A>
concept AddsDelta = requires(A& a, const ConstMatrixRef<typename A::Scalar>& x, Matrix<typename A::Scalar>& m) {
  a.forward_delta(x, m);
  a.backward_delta(x, m);
};

/// Has forward_output/backward_output: edits the layer's output in place.
template <class A>
concept EditsOutput = requires(A& a, Matrix<typename A::Scalar>& m) {
  a.forward_output(m);
  a.backward_output(m);
};

/// What Adapted<A> needs: Scalar, sizes, parameters, flops, and at least one of
/// the three edit points (EditsInput, AddsDelta, EditsOutput).
template <class A>
concept Adapter = requires(A& a, const A& ca, Index n) {
  typename A::Scalar;
  { ca.in_features() } -> std::convertible_to<Index>;
  { ca.out_features() } -> std::convertible_to<Index>;
  { a.parameters() };
  { a.zero_grad() };
  { ca.num_params() } -> std::convertible_to<Index>;
  { ca.flops(n) } -> std::convertible_to<double>;
} && (EditsInput<A> || AddsDelta<A> || EditsOutput<A>);

/// Has the const inference edit points (see the header comment) for every
/// edit point it has: Adapted<A>::infer and MultiAdapted::infer need it.
template <class A>
concept Infers =
    Adapter<A> &&
    (!EditsInput<A> || requires(const A& a, Matrix<typename A::Scalar>& m) { a.infer_input(m); }) &&
    (!AddsDelta<A> ||
     requires(const A& a, const ConstMatrixRef<typename A::Scalar>& x, Matrix<typename A::Scalar>& m) {
       a.infer_delta(x, m);
     }) &&
    (!EditsOutput<A> || requires(const A& a, Matrix<typename A::Scalar>& m) { a.infer_output(m); } ||
     requires(const A& a, const Linear<typename A::Scalar>& base, Matrix<typename A::Scalar>& m) {
       a.infer_output(base, m);
     });

/// Linear in X with a dense equivalent: Δ(X) = X·ΔWᵀ.
template <class A>
concept HasDeltaWeight = requires(const A& a) {
  { a.delta_weight() } -> std::convertible_to<Matrix<typename A::Scalar>>;
};

/// Linear in X with a dense equivalent that depends on the base's weights
/// (DoRA): Δ(X) = X·ΔWᵀ with ΔW = a.delta_weight(base).
template <class A>
concept HasBaseDeltaWeight = requires(const A& a, const Linear<typename A::Scalar>& base) {
  { a.delta_weight(base) } -> std::convertible_to<Matrix<typename A::Scalar>>;
};

/// Merges by its own merge_into/unmerge_from: a scaling (IA3, RED) or a ΔW that
/// also changes the bias (LoRA's lora_bias).
template <class A>
concept MergesItself = requires(A& a, Linear<typename A::Scalar>& base) {
  a.merge_into(base);
  a.unmerge_from(base);
};

/// An adapter Adapted<A>::merge() can fold into the base weights.
template <class A>
concept Mergeable = Adapter<A> && (HasDeltaWeight<A> || MergesItself<A>);

/// An adapter whose configuration picks the point (IA3: input scaling on
/// feed-forward layers, output scaling otherwise) implements both edits and
/// says per instance which one is live; the other is skipped.
template <class A>
bool input_edit_active(const A& a) {
  if constexpr (requires { { a.edits_input() } -> std::convertible_to<bool>; }) return a.edits_input();
  else return EditsInput<A>;
}
/// Whether the output edit runs for this instance (see input_edit_active).
template <class A>
bool output_edit_active(const A& a) {
  if constexpr (requires { { a.edits_output() } -> std::convertible_to<bool>; }) return a.edits_output();
  else return EditsOutput<A>;
}

/// Reads the frozen layer's W or b (DoRA): Adapted calls use_base(base) on
/// construction and at the start of forward, backward, merge and unmerge.
template <class A>
concept UsesBase = requires(A& a, const Linear<typename A::Scalar>& base) { a.use_base(base); };

/// Whether the adapter's output edit keeps the base bias out of its function
/// (H' = f(H − b) + b, as DoRA's c ⊙ (H − b) + b), so that the bias's gradient
/// is dY rather than the gradient the edit hands back for H.
template <class A>
bool output_edit_passes_bias(const A& a) {
  if constexpr (requires { { a.output_edit_passes_bias() } -> std::convertible_to<bool>; })
    return a.output_edit_passes_bias();
  else return false;
}

/// Adapters with a train/eval distinction (dropout) expose set_training().
template <class A>
concept HasTrainingMode = requires(A& a) { a.set_training(true); };

/// An adapter that draws random numbers while training (dropout masks): its
/// generators, so that a training checkpoint can save and restore them.
template <class A>
concept HasRandomStreams = requires(A& a) {
  { a.random_streams() } -> std::same_as<std::vector<Rng*>>;
};

namespace detail {

/// An Infers adapter's output edit, handed the base when it reads it (DoRA).
template <class A, class Base>
void infer_output(const A& a, const Base& base, Matrix<typename A::Scalar>& H) {
  if constexpr (requires { a.infer_output(H); }) a.infer_output(H);
  else a.infer_output(base, H);
}

/// Owner tag of the edited input's per-thread scratch (infer_through).
struct EditedInput;

/// Y = output_edit(base(input_edit(X)) + Δ(input_edit(X))) through an Infers
/// adapter's const edit points: the inference path of Adapted. The edited
/// input lives in the calling thread's scratch.
template <class A, class Base>
void infer_through(const A& a, const Base& base, const ConstMatrixRef<typename A::Scalar>& X,
                   Matrix<typename A::Scalar>& Y) {
  using T = typename A::Scalar;
  auto from_input = [&](const ConstMatrixRef<T>& input) {
    base.forward(input, Y);
    if constexpr (AddsDelta<A>) a.infer_delta(input, Y);
    if constexpr (EditsOutput<A>)
      if (output_edit_active(a)) infer_output(a, base, Y);
  };
  if constexpr (EditsInput<A>) {
    if (input_edit_active(a)) {
      Matrix<T>& edited = thread_matrix<EditedInput, T>(X.rows(), X.cols());
      edited = X;
      a.infer_input(edited);
      from_input(edited);
      return;
    }
  }
  from_input(X);
}

/// The shape check every additive adapter's forward_delta starts with.
template <class T>
void check_delta_shapes(const char* who, const ConstMatrixRef<T>& X, const Matrix<T>& Y, Index d_in, Index d_out) {
  PEFT_REQUIRE(X.cols() == d_in && Y.rows() == X.rows() && Y.cols() == d_out, who, ": expected X with d_in = ", d_in,
               " columns and Y of N x d_out = ", shape_str(X.rows(), d_out), ", got X ", shape_str(X.rows(), X.cols()),
               ", Y ", shape_str(Y.rows(), Y.cols()));
}

}  // namespace detail
}  // namespace peft
