// What the CPU and CUDA hash-grid encoders share: a level's description, how it is derived from the layout
// (dense or hashed indexing, the mapping's derivative), and the dispatch onto the compiled (D, F) variants.
// Plain C++ included by both cpu/hash_encode.cpp and cuda/hash_encode.cu, so the two cannot drift apart.

#pragma once

#include <cstdint>
#include <type_traits>

namespace instag_grid {

struct Level {
  float res;       // cells per axis
  int last;        // index of the last cell, res - 1
  bool dense;      // (res + 1)^D vertices fit: index them densely, else hash
  uint32_t mask;   // hashed: size - 1 (hashed levels have a power-of-two size)
  int64_t offset;  // first entry in one plane's table
  int64_t size;    // entries
  float dpos_dx;   // d(position in cells)/dx inside [-bound, bound]: res / (2 bound)
};

// Level l of a `dim`-dimensional grid with `resolutions[l]` cells per axis at table entries
// [offsets[l], offsets[l + 1]).
inline Level make_level(int dim, int l, const int32_t* resolutions, const int64_t* offsets, float bound) {
  const int res = resolutions[l];
  const int64_t size = offsets[l + 1] - offsets[l];
  uint64_t vertices = 1;
  for (int d = 0; d < dim; ++d) vertices *= static_cast<uint64_t>(res) + 1;
  return Level{static_cast<float>(res), res - 1, vertices <= static_cast<uint64_t>(size),
               static_cast<uint32_t>(size - 1), offsets[l], size, static_cast<float>(res) / (2.0f * bound)};
}

// Calls fn(integral_constant<D>, integral_constant<F>) for the supported grid dimensions and feature counts;
// false for any other.
template <typename Fn>
bool dispatch(int dim, int features, Fn&& fn) {
  auto with_dim = [&](auto d) {
    switch (features) {
      case 1: fn(d, std::integral_constant<int, 1>{}); return true;
      case 2: fn(d, std::integral_constant<int, 2>{}); return true;
      case 4: fn(d, std::integral_constant<int, 4>{}); return true;
      case 8: fn(d, std::integral_constant<int, 8>{}); return true;
      default: return false;
    }
  };
  if (dim == 2) return with_dim(std::integral_constant<int, 2>{});
  if (dim == 3) return with_dim(std::integral_constant<int, 3>{});
  return false;
}

}  // namespace instag_grid
