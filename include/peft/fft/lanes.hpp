#pragma once
// Lane vectors for the batched FFT engine: one SIMD vector holds the same
// element of L different rows, so every butterfly runs on L rows at once.
// L = (vector width × a small unroll) / sizeof(T), fixed at compile time from
// the target: 64 bytes where AVX/AVX-512 exist (one AVX-512 register, or two
// AVX ones), 32 bytes otherwise (two SSE2 registers; the compiler splits the
// vectors into whatever the target has, down to scalar code).
// Lane vectors only ever travel by reference: passing them by value would
// change the calling convention between targets (GCC's -Wpsabi).

#include <algorithm>
#include <complex>
#include <cstdint>
#include <cstring>
#include <utility>

#include <peft/core/intrinsics.hpp>  // before <immintrin.h>: see there (GCC 12)

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <peft/core/types.hpp>

namespace peft::fft::detail {

#if defined(PEFT_FFT_LANE_BYTES)
inline constexpr int kLaneBytes = PEFT_FFT_LANE_BYTES;  // for experiments: 16, 32, 64 or 128
#elif defined(__AVX__) || defined(__AVX512F__)
inline constexpr int kLaneBytes = 64;
#else
inline constexpr int kLaneBytes = 32;
#endif

template <class T>
struct Lanes {
  static constexpr int count = kLaneBytes / static_cast<int>(sizeof(T));
  typedef T type __attribute__((vector_size(kLaneBytes)));
};

/// One complex element of L rows: the real parts and the imaginary parts.
template <class T>
struct LaneComplex {
  using V = typename Lanes<T>::type;
  V re, im;
};

/// Where element j of a panel buffer lives: slot(j) = j + ⌊j / 2^shift⌋,
/// i.e. one empty slot after every 2^shift elements (natural: shift 62, no
/// gap). Long power-of-two transforms read and write their panel at strides
/// that are multiples of 4 KiB; in the natural layout all 32 or 64 streams of
/// a pass then map to one L1 set (8 ways), so every access misses and no
/// prefetch survives. A gap every 4 KiB spreads them over the sets (one
/// fused pass at m = 2048 measured 1.6–1.7× faster on the EPYC).
struct PanelLayout {
  int shift = 62;
  Index slot(Index j) const { return j + (j >> shift); }
  /// Slots a buffer of `count` elements needs.
  Index extent(Index count) const { return count > 0 ? slot(count - 1) + 1 : 0; }
  bool natural() const { return shift == 62; }
  friend bool operator==(PanelLayout, PanelLayout) = default;
};

/// One level of an in-register transpose: rows a (bit H clear) and b = the
/// row H further swap the blocks where row and column differ in bit H:
///   a'[c] = bit_H(c) ? b[c − H] : a[c],   b'[c] = bit_H(c) ? b[c] : a[c + H].
template <class V, int L, int H, int... I>
inline void swap_blocks(V& a, V& b, std::integer_sequence<int, I...>) {
  const V na = __builtin_shufflevector(a, b, ((I & H) ? (I - H + L) : I)...);
  const V nb = __builtin_shufflevector(a, b, ((I & H) ? (I + L) : (I + H))...);
  a = na;
  b = nb;
}

template <class V, int L, int H>
inline void transpose_levels(V* v) {
  for (int i = 0; i < L; ++i)
    if ((i & H) == 0) swap_blocks<V, L, H>(v[i], v[i + H], std::make_integer_sequence<int, L>{});
  if constexpr (H > 1) transpose_levels<V, L, H / 2>(v);
}

/// Transposes L lane vectors in place (v[i][c] ↔ v[c][i]): log2(L) levels of
/// block swaps, L shuffles each, instead of L² scalar moves.
template <class T>
inline void transpose(typename Lanes<T>::type* v) {
  transpose_levels<typename Lanes<T>::type, Lanes<T>::count, Lanes<T>::count / 2>(v);
}

/// v[c][l] = in[l·stride + c] for c < L, l < lanes; lanes ≥ `lanes` are zero.
template <class T>
inline void load_transposed(typename Lanes<T>::type* v, const T* in, Index stride, int lanes) {
  using V = typename Lanes<T>::type;
  constexpr int L = Lanes<T>::count;
  if (lanes == L) {  // full panels without a test per row
    for (int l = 0; l < L; ++l) std::memcpy(&v[l], in + l * stride, sizeof(V));
  } else {
    for (int l = 0; l < L; ++l) {
      if (l < lanes) std::memcpy(&v[l], in + l * stride, sizeof(V));
      else v[l] = V{};
    }
  }
  transpose<T>(v);
}

// Rows whose stride is (close to) a multiple of 4 KiB, such as rows of
// n = 4096 floats or their half spectra, start in the same L1 set or two:
// the L1 has 64 sets of 64-byte lines, the set is bits 6..11 of the address.
// A block of L = 16 rows then touches 16 lines of one set, more than its 8
// ways hold. When the rows are also off a line boundary, every load of L
// elements takes two lines of its row, and the second one, needed again by
// the row's next block, has been evicted by the other rows' by then. Such
// rows are read through a small stage, kStageBlocks blocks at a time: the
// first L − 8 rows are copied there one row at a time, and only the last 8
// are read across rows, as many as a set holds (RowBlockReader). Measured
// on the EPYC (n = 4096, 16-row panels, kcycles a panel): reading rows off
// a line 37 → 21; gathering half spectra (2049 bins a row) 44 → 39. Rows
// on a line boundary are read as they are: each load takes one line, used
// at once. (Writing such rows a row at a time as well made the forward's
// scatter 25% faster alone, but the 256-row round trip no faster.)
inline constexpr int kL1Ways = 8;
inline constexpr Index kStageBlocks = 8;

/// Rows staged for a panel of L rows: all but kL1Ways.
template <class T>
inline constexpr int kStagedRows = std::max(Lanes<T>::count - kL1Ways, 0);

/// Whether L rows from `rows` at `stride` crowd the L1's sets (above): more
/// than half its ways' worth of rows start in one set, and not all of them
/// on a line boundary.
template <class T>
inline bool rows_crowd_l1_sets(const T* rows, Index stride, int lanes) {
  if constexpr (kStagedRows<T> == 0) return false;
  int in_set[64] = {};
  int most = 0;
  bool aligned = true;
  for (int l = 0; l < lanes; ++l) {
    const auto at = reinterpret_cast<std::uintptr_t>(rows + l * stride);
    aligned = aligned && at % 64 == 0;
    most = std::max(most, ++in_set[at / 64 % 64]);
  }
  return !aligned && most > kL1Ways / 2;
}

/// Reads a sequence of blocks of L rows (block i: the L elements from
/// at(i) of every row) transposed, as load_transposed does, staged when the
/// rows crowd the L1 (above). Blocks are read in order, i = 0, 1, ...
template <class T>
class RowBlockReader {
 public:
  using V = typename Lanes<T>::type;

  RowBlockReader(const T* in, Index stride, int lanes)
      : in_(in), stride_(stride), lanes_(lanes),
        staged_(S > 0 && lanes == L && rows_crowd_l1_sets(in, stride, lanes)) {}

  /// v[c][l] = in[l·stride + at(i) + c] (lanes ≥ `lanes` zero), block i of `count`.
  template <class At>
  void read(Index i, Index count, At&& at, V* v) {
    if (!staged_) {
      load_transposed<T>(v, in_ + at(i), stride_, lanes_);
      return;
    }
    const Index first = i - i % kStageBlocks;
    if (i == first) {  // stage the chunk's first S rows, one row at a time
      const Index chunk = std::min(kStageBlocks, count - first);
      for (int l = 0; l < S; ++l)
        for (Index b = 0; b < chunk; ++b) std::memcpy(&stage_[b][l], in_ + l * stride_ + at(first + b), sizeof(V));
    }
    for (int l = 0; l < S; ++l) v[l] = stage_[i - first][l];
    for (int l = S; l < L; ++l) std::memcpy(&v[l], in_ + l * stride_ + at(i), sizeof(V));
    transpose<T>(v);
  }

 private:
  static constexpr int L = Lanes<T>::count, S = kStagedRows<T>;
  const T* in_;
  Index stride_;
  int lanes_;
  bool staged_;
  V stage_[kStageBlocks][std::max(S, 1)];
};

/// For b < blocks, use(b, v) with v[c][l] = in[l·stride + b·L + c] (c < L,
/// l < lanes; other lanes zero).
template <class T, class Use>
inline void load_row_blocks(const T* in, Index stride, int lanes, Index blocks, Use&& use) {
  typename Lanes<T>::type v[Lanes<T>::count];
  RowBlockReader<T> reader(in, stride, lanes);
  for (Index b = 0; b < blocks; ++b) {
    reader.read(b, blocks, [](Index i) { return i * Lanes<T>::count; }, v);
    use(b, v);
  }
}

/// Writes rows from lane vectors, a block of L elements of every row at a
/// time: for b < blocks, fill(b, v) puts element c of block b in v[c]; the
/// block is transposed and row l's L elements go to out[l·stride + b·L ..]
/// (or are added there with `accumulate`). `lanes` ≤ L rows are written.
template <class T, class Fill>
inline void store_row_blocks(T* out, Index stride, int lanes, Index blocks, bool accumulate, Fill&& fill);

#if defined(__AVX512F__)
/// store_row_blocks for a full panel with 64-byte lanes, by aligned 64-byte
/// stores. Rows rarely start on a cache line (a half spectrum of n/2 + 1
/// complex bins never keeps the next row aligned), and a 64-byte store that
/// straddles two lines, for sixteen rows whose lines compete for the same L1
/// sets, costs ~3× an aligned one here. So row l keeps its previous block
/// and each store takes the line that ends inside the current block:
///   line = (previous block)[L − o ..) ++ (this block)[.. L − o),
/// o = the row's offset from a line boundary in 32-bit units (one
/// two-source permute), with masked stores for the row's first and last
/// partial lines. Each line of the row is written once.
template <class T, class Fill>
inline void store_row_blocks_aligned(T* out, Index stride, Index blocks, bool accumulate, Fill& fill) {
  using V = typename Lanes<T>::type;
  constexpr int L = Lanes<T>::count;
  static_assert(sizeof(V) == 64, "one line per lane vector");
  __m512i shift[L];
  __mmask16 head[L];
  float* line[L];  // row l's first line (its start rounded down to 64 bytes)
  V buffers[2][L];  // this block and the previous one, alternating
  for (int l = 0; l < L; ++l) {
    const auto at = reinterpret_cast<std::uintptr_t>(out + l * stride);
    const int o = static_cast<int>(at % 64) / 4;
    shift[l] = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                _mm512_set1_epi32(16 - o));
    head[l] = static_cast<__mmask16>(0xFFFFu << o);
    line[l] = reinterpret_cast<float*>(at - at % 64);
    buffers[1][l] = V{};
  }
  // Adds what `where` holds under `mask` (as T) when accumulating.
  const auto with_held = [accumulate](__m512 x, const float* where, __mmask16 mask) {
    if (!accumulate) return x;
    const __m512 held = _mm512_maskz_loadu_ps(mask, where);
    return reinterpret_cast<__m512>(reinterpret_cast<V>(x) + reinterpret_cast<V>(held));
  };
  for (Index b = 0; b < blocks; ++b) {
    V* v = buffers[b % 2];
    const V* previous = buffers[(b + 1) % 2];
    fill(b, v);
    transpose<T>(v);
    for (int l = 0; l < L; ++l) {
      float* at = line[l] + 16 * b;
      const __m512 x = _mm512_permutex2var_ps(reinterpret_cast<__m512>(previous[l]), shift[l],
                                              reinterpret_cast<__m512>(v[l]));
      if (b == 0) {
        _mm512_mask_storeu_ps(at, head[l], with_held(x, at, head[l]));
      } else {
        _mm512_store_ps(at, with_held(x, at, 0xFFFF));
      }
    }
  }
  for (int l = 0; l < L; ++l) {  // the last partial line: the first o 32-bit units
    const __mmask16 tail = static_cast<__mmask16>(~head[l]);
    if (tail == 0 || blocks == 0) continue;
    float* at = line[l] + 16 * blocks;
    const __m512 p = reinterpret_cast<__m512>(buffers[(blocks + 1) % 2][l]);
    _mm512_mask_storeu_ps(at, tail, with_held(_mm512_permutex2var_ps(p, shift[l], p), at, tail));
  }
}
#endif

template <class T, class Fill>
inline void store_row_blocks(T* out, Index stride, int lanes, Index blocks, bool accumulate, Fill&& fill) {
  using V = typename Lanes<T>::type;
  constexpr int L = Lanes<T>::count;
#if defined(__AVX512F__)
  if constexpr (kLaneBytes == 64) {
    bool aligned = true;  // every row on a line: plain stores are already whole lines
    for (int l = 0; l < lanes && aligned; ++l) aligned = reinterpret_cast<std::uintptr_t>(out + l * stride) % 64 == 0;
    if (lanes == L && !aligned) {
      store_row_blocks_aligned<T>(out, stride, blocks, accumulate, fill);
      return;
    }
  }
#endif
  V v[L];
  for (Index b = 0; b < blocks; ++b) {
    fill(b, v);
    transpose<T>(v);
    for (int l = 0; l < std::min<int>(lanes, L); ++l) {  // lanes ≤ L, restated for GCC's -Warray-bounds
      T* dst = out + l * stride + b * L;
      if (accumulate) {
        V held;
        std::memcpy(&held, dst, sizeof(V));
        v[l] += held;
      }
      std::memcpy(dst, &v[l], sizeof(V));
    }
  }
}

/// f(first_row, lanes, panel) for each panel of `lanes_per_panel` rows of
/// `rows`; the last one may be ragged (lanes < lanes_per_panel).
template <class F>
inline void for_each_panel(Index rows, int lanes_per_panel, F&& f) {
  for (Index r0 = 0, p = 0; r0 < rows; r0 += lanes_per_panel, ++p)
    f(r0, static_cast<int>(std::min<Index>(lanes_per_panel, rows - r0)), p);
}

// Pointwise complex arithmetic on lanes: one element, then whole spectra.

/// x ← x·w, the same w in every lane.
template <class T>
inline void multiply_lane(LaneComplex<T>& x, std::complex<T> w) {
  using V = typename Lanes<T>::type;
  const V re = x.re * w.real() - x.im * w.imag();
  x.im = x.re * w.imag() + x.im * w.real();
  x.re = re;
}

/// sum ← sum + x·w.
template <class T>
inline void add_product_lane(LaneComplex<T>& sum, const LaneComplex<T>& x, std::complex<T> w) {
  sum.re += x.re * w.real() - x.im * w.imag();
  sum.im += x.re * w.imag() + x.im * w.real();
}

template <class T>
inline std::complex<T> maybe_conj(std::complex<T> w, bool conj) {
  return conj ? std::conj(w) : w;
}

/// out[k] = z[k]·w[k] (or conj w[k]) for k < count; out may be z.
template <class T>
inline void product_lanes(const LaneComplex<T>* z, const std::complex<T>* w, bool conj_w, LaneComplex<T>* out,
                          Index count) {
  for (Index k = 0; k < count; ++k) {
    out[k] = z[k];
    multiply_lane(out[k], maybe_conj(w[k], conj_w));
  }
}

/// z[k] ← z[k]·w[k] (or conj w[k]) for k < count.
template <class T>
inline void multiply_lanes(LaneComplex<T>* z, const std::complex<T>* w, bool conj_w, Index count) {
  for (Index k = 0; k < count; ++k) multiply_lane(z[k], maybe_conj(w[k], conj_w));
}

/// sum[k] += z[k]·w[k] (or conj w[k]) for k < count.
template <class T>
inline void add_product_lanes(LaneComplex<T>* sum, const LaneComplex<T>* z, const std::complex<T>* w, bool conj_w,
                              Index count) {
  for (Index k = 0; k < count; ++k) add_product_lane(sum[k], z[k], maybe_conj(w[k], conj_w));
}

// A kernel gradient's batch sum Σ_rows conj(a)·b is kept per bin in a
// quarter of the lanes (at least one): each product is folded, lane l adding
// lanes l, l + F, l + 2F, ... of it, before it is added. LDR keeps 2ρ such
// sums of n/2 + 1 bins; at full width (128 bytes a bin) they outgrow L2 and
// stream from L3 for every panel.

template <class T>
struct SumLanes {
  static constexpr int count = std::max(Lanes<T>::count / 4, 1);
  typedef T type __attribute__((vector_size(count * sizeof(T))));
};

/// One bin of a folded batch sum: real and imaginary parts.
template <class T>
struct SumComplex {
  using V = typename SumLanes<T>::type;
  V re, im;
};

/// out = v folded to out's width: lane l of out sums v's lanes l, l + F,
/// l + 2F, ... (F = out's lane count), by adding halves. Vectors pass by
/// reference: wider than the target's registers they would change the ABI.
template <class V, class Out>
inline void fold_into(const V& v, Out& out) {
  if constexpr (sizeof(V) == sizeof(Out)) {
    out = v;
  } else {
    [&]<int... I>(std::integer_sequence<int, I...>) {
      constexpr int H = sizeof...(I);
      fold_into(__builtin_shufflevector(v, v, I...) + __builtin_shufflevector(v, v, (I + H)...), out);
    }(std::make_integer_sequence<int, static_cast<int>(sizeof(V) / sizeof(v[0]) / 2)>{});
  }
}

/// sum += v folded to SumLanes<T>::count lanes.
template <class T>
inline void add_folded(typename SumLanes<T>::type& sum, const typename Lanes<T>::type& v) {
  typename SumLanes<T>::type folded;
  fold_into(v, folded);
  sum += folded;
}

/// sum ← sum + conj(a)·b, folded.
template <class T>
inline void add_conj_product_folded(SumComplex<T>& sum, const LaneComplex<T>& a, const LaneComplex<T>& b) {
  add_folded<T>(sum.re, a.re * b.re + a.im * b.im);
  add_folded<T>(sum.im, a.re * b.im - a.im * b.re);
}

/// out[k] = the sum of z[k]'s lanes, k < count.
template <class T>
inline void reduce_lanes(const SumComplex<T>* z, std::complex<T>* out, Index count) {
  for (Index k = 0; k < count; ++k) {
    T re = 0, im = 0;
    for (int l = 0; l < SumLanes<T>::count; ++l) {
      re += z[k].re[l];
      im += z[k].im[l];
    }
    out[k] = std::complex<T>(re, im);
  }
}

}  // namespace peft::fft::detail
