#pragma once
// The x86 intrinsics headers, included ahead of Eigen so that a GCC 12 bug
// stays inside them. GCC 12's _mm*_undefined_*() read `__m512d __Y = __Y;`,
// and GCC 12 warns about that self-initialisation ("‘__Y’ may be used
// uninitialized", -Wmaybe-uninitialized / -Wuninitialized) wherever an
// intrinsic built on it is inlined: with -march=native -O2 -Wall on an
// AVX-512 machine, hundreds of times from Eigen's products, reductions and
// complex arithmetic alone (GCC bug 105593; GCC 13 silences it inside its
// own headers). The warnings point into GCC's headers, so turning these two
// off for those headers' lines only, as GCC 13 does, leaves every other line
// of the user's code and ours warned as before. It works where peft is the
// first to include <immintrin.h> (or Eigen) in a translation unit.

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12 && defined(__AVX__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
