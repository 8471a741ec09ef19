// Multi-resolution hash-grid encoders on the CPU (OpenMP): the tri-plane encoder (three 2D grids) and the
// 3D grid of the motion aligner share one implementation, templated on the grid dimension D.
//
// A "column" is one (plane, level) pair. Every plane has the same levels, so the table is laid out
// [n_planes, plane_size, n_features] with plane_size = offsets[n_levels], and level l of a plane occupies
// entries [offsets[l], offsets[l+1]). The output is [n, n_planes * n_levels * n_features], plane-major,
// then level, then feature. The maths (mapping, clamping, indexing, hashing) must stay identical to
// instag/kernels/hash_encode_ref.py and cuda/hash_encode.cu.
//
// Plain C++ on raw pointers with an extern "C" API, bound with ctypes: no torch headers, so it builds fast.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "grid_common.h"

namespace {

using instag_grid::dispatch;
using instag_grid::Level;
using instag_grid::make_level;

constexpr uint32_t kPrimes[3] = {1u, 2654435761u, 805459861u};

// One level of a grid, with what every point needs from it worked out once.

struct Grid {
  int n_planes;
  const int32_t* axes;  // [n_planes, D]: which xyz coordinate each grid axis reads
  int n_levels;
  int n_features;
  std::vector<Level> levels;
  float bound;
  int64_t plane_size;  // entries per plane = offsets[n_levels]
};

// A point mapped to [0, 1]^3 and clamped; `inside` is where the clamp let the gradient through.
struct Unit {
  float u[3];
  bool inside[3];
};

inline Unit to_unit(const float* point, float bound) {
  Unit t;
  for (int k = 0; k < 3; ++k) {
    const float u = (point[k] + bound) / (2.0f * bound);
    t.inside[k] = u >= 0.0f && u <= 1.0f;
    // Written so that NaN fails both tests and lands on 0: std::max/min pass NaN through, and int(NaN) indexed
    // outside the table. ±inf and huge values clamp like any point outside the grid.
    t.u[k] = u > 0.0f ? (u < 1.0f ? u : 1.0f) : 0.0f;
  }
  return t;
}

// Where a point falls in one level of one plane: the 2^D corner entries and their interpolation weights,
// and the fractional position the weights' derivatives need.
template <int D>
struct Cell {
  uint32_t index[1 << D];
  float weight[1 << D];
  float frac[D];
};

template <int D>
inline void locate(const Unit& t, const int32_t* axes, const Level& lv, Cell<D>& cell) {
  uint32_t base[D];
  for (int d = 0; d < D; ++d) {
    const float pos = t.u[axes[d]] * lv.res;
    // pos >= 0, so truncation is floor; the last cell is closed so that u = 1 lands in it with frac = 1.
    const int i = std::min(static_cast<int>(pos), lv.last);
    base[d] = static_cast<uint32_t>(i);
    cell.frac[d] = pos - static_cast<float>(i);
  }
  const uint32_t side = static_cast<uint32_t>(lv.last) + 2;  // vertices per axis
  for (int c = 0; c < (1 << D); ++c) {
    uint32_t index = 0, stride = 1;
    float weight = 1.0f;
    for (int d = 0; d < D; ++d) {
      const uint32_t bit = (c >> d) & 1u;
      const uint32_t coord = base[d] + bit;
      if (lv.dense) {
        index += coord * stride;
        stride *= side;
      } else {
        index ^= coord * kPrimes[d];
      }
      weight *= bit ? cell.frac[d] : 1.0f - cell.frac[d];
    }
    cell.index[c] = lv.dense ? index : index & lv.mask;
    cell.weight[c] = weight;
  }
}

// d(weight of corner c)/d(frac along axis d): the product of the other axes' factors, signed by the bit.
template <int D>
inline float weight_derivative(const Cell<D>& cell, int c, int d) {
  float w = ((c >> d) & 1) ? 1.0f : -1.0f;
  for (int e = 0; e < D; ++e) {
    if (e != d) w *= ((c >> e) & 1) ? cell.frac[e] : 1.0f - cell.frac[e];
  }
  return w;
}

// Forward, parallel over chunks of points: each thread writes whole output rows, so nothing is shared.
// Inside a chunk the loop runs level by level, so one level's table slice is hot while the chunk's points
// read it (measured 1.2-1.4x faster than looping over the levels inside each point). Features accumulate
// in registers (F is a template parameter): accumulating in the output row instead put a store-to-load
// dependency between corners and ran 2x slower.
template <int D, int F>
void forward(const Grid& g, const float* xyz, int64_t n, const float* table, float* out, int threads) {
  const int64_t row = static_cast<int64_t>(g.n_planes) * g.n_levels * F;
  constexpr int64_t kChunk = 1024;  // the chunk's output rows (144 KB for the default tri-plane) stay in L2
  // Dynamic: on a busy machine a preempted thread's chunks go to the others (measured faster under load).
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t count = std::min(kChunk, n - start);
    Unit units[kChunk];
    for (int64_t i = 0; i < count; ++i) units[i] = to_unit(xyz + 3 * (start + i), g.bound);
    for (int p = 0; p < g.n_planes; ++p) {
      const float* plane = table + p * g.plane_size * F;
      for (int l = 0; l < g.n_levels; ++l) {
        const Level& lv = g.levels[l];
        const float* level = plane + lv.offset * F;
        float* dst = out + start * row + (p * g.n_levels + l) * F;
        for (int64_t i = 0; i < count; ++i, dst += row) {
          Cell<D> cell;
          locate<D>(units[i], g.axes + D * p, lv, cell);
          float acc[F] = {};
          for (int c = 0; c < (1 << D); ++c) {
            const float* entry = level + static_cast<int64_t>(cell.index[c]) * F;
            for (int f = 0; f < F; ++f) acc[f] += cell.weight[c] * entry[f];
          }
          for (int f = 0; f < F; ++f) dst[f] = acc[f];
        }
      }
    }
  }
}

// Table gradient without races or per-thread copies of the table (point-parallel scattering into one copy
// per thread, then a reduction, measured 2x slower): each thread owns the table slices of a fixed set of
// columns (round robin, so fine and coarse levels mix) and scatters into them. Points go in
// chunks whose rows of grad_out stay in cache while the thread's columns read them: one full pass over the
// points per column re-read grad_out from memory once per column and was 4x slower at 500k points. The
// threads never wait on each other (a shared per-chunk buffer with barriers was slower on a busy machine).
template <int D, int F>
void backward_table(const Grid& g, const float* xyz, int64_t n, const float* grad_out, float* grad_table,
                    int threads) {
  // 16k points: their rows of grad_out (2.4 MB for the default tri-plane) stay in L3, and each slice is
  // reused by enough points per chunk to be worth bringing into L2 (4k points measured ~1.2x slower).
  constexpr int64_t kChunk = 16384;
  const int columns = g.n_planes * g.n_levels;
  const int64_t row = static_cast<int64_t>(columns) * F;
#pragma omp parallel num_threads(threads)
  {
    const int first = omp_get_thread_num(), step = omp_get_num_threads();
    for (int column = first; column < columns; column += step) {
      const Level& lv = g.levels[column % g.n_levels];
      float* slice = grad_table + ((column / g.n_levels) * g.plane_size + lv.offset) * F;
      std::memset(slice, 0, sizeof(float) * lv.size * F);
    }
    std::vector<Unit> units(static_cast<size_t>(std::min(n, kChunk)));
    for (int64_t start = 0; start < n; start += kChunk) {
      const int64_t count = std::min(kChunk, n - start);
      for (int64_t i = 0; i < count; ++i) units[i] = to_unit(xyz + 3 * (start + i), g.bound);
      for (int column = first; column < columns; column += step) {
        const int p = column / g.n_levels;
        const Level& lv = g.levels[column % g.n_levels];
        float* slice = grad_table + (p * g.plane_size + lv.offset) * F;
        const float* go = grad_out + start * row + static_cast<int64_t>(column) * F;
        for (int64_t i = 0; i < count; ++i, go += row) {
          Cell<D> cell;
          locate<D>(units[i], g.axes + D * p, lv, cell);
          float grad[F];
          for (int f = 0; f < F; ++f) grad[f] = go[f];
          for (int c = 0; c < (1 << D); ++c) {
            float* entry = slice + static_cast<int64_t>(cell.index[c]) * F;
            for (int f = 0; f < F; ++f) entry[f] += cell.weight[c] * grad[f];
          }
        }
      }
    }
  }
}

// Point gradient, parallel over points (each owns its row of grad_xyz), dynamic in chunks as the forward.
template <int D, int F>
void backward_xyz(const Grid& g, const float* xyz, int64_t n, const float* table, const float* grad_out,
                  float* grad_xyz, int threads) {
  const int64_t row = static_cast<int64_t>(g.n_planes) * g.n_levels * F;
#pragma omp parallel for schedule(dynamic, 1024) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) {
    const Unit t = to_unit(xyz + 3 * i, g.bound);
    const float* go = grad_out + i * row;
    float grad[3] = {0.0f, 0.0f, 0.0f};
    for (int p = 0; p < g.n_planes; ++p) {
      const int32_t* axes = g.axes + D * p;
      const float* plane = table + p * g.plane_size * F;
      for (int l = 0; l < g.n_levels; ++l, go += F) {
        const Level& lv = g.levels[l];
        Cell<D> cell;
        locate<D>(t, axes, lv, cell);
        const float* level = plane + lv.offset * F;
        float dfrac[D] = {};  // d(loss)/d(frac along each grid axis)
        for (int c = 0; c < (1 << D); ++c) {
          const float* entry = level + static_cast<int64_t>(cell.index[c]) * F;
          float dot = 0.0f;  // d(loss)/d(weight of corner c)
          for (int f = 0; f < F; ++f) dot += go[f] * entry[f];
          for (int d = 0; d < D; ++d) dfrac[d] += dot * weight_derivative<D>(cell, c, d);
        }
        for (int d = 0; d < D; ++d) {
          if (t.inside[axes[d]]) grad[axes[d]] += dfrac[d] * lv.dpos_dx;
        }
      }
    }
    for (int k = 0; k < 3; ++k) grad_xyz[3 * i + k] = grad[k];
  }
}


Grid make_grid(int dim, int n_planes, const int32_t* axes, int n_levels, int n_features,
               const int32_t* resolutions, const int64_t* offsets, float bound) {
  Grid g{n_planes, axes, n_levels, n_features, {}, bound, offsets[n_levels]};
  for (int l = 0; l < n_levels; ++l) {
    g.levels.push_back(make_level(dim, l, resolutions, offsets, bound));
  }
  return g;
}

}  // namespace

extern "C" {

// out: [n, n_planes * n_levels * n_features], overwritten. Returns 0, or 1 when dim is not 2 or 3 or
// n_features not 1, 2, 4 or 8.
int instag_grid_encode_forward_cpu(const float* xyz, int64_t n, const float* table, float* out, int dim,
                                   int n_planes, const int32_t* axes, int n_levels, int n_features,
                                   const int32_t* resolutions, const int64_t* offsets, float bound, int threads) {
  const Grid g = make_grid(dim, n_planes, axes, n_levels, n_features, resolutions, offsets, bound);
  const bool ok = dispatch(dim, n_features, [&](auto d, auto f) {
    forward<decltype(d)::value, decltype(f)::value>(g, xyz, n, table, out, threads);
  });
  return ok ? 0 : 1;
}

// grad_table: [n_planes, plane_size, n_features] and grad_xyz: [n, 3], each overwritten, each skipped when
// null. Returns 0, or 1 for an unsupported dim or n_features.
int instag_grid_encode_backward_cpu(const float* xyz, int64_t n, const float* table, const float* grad_out,
                                    float* grad_table, float* grad_xyz, int dim, int n_planes, const int32_t* axes,
                                    int n_levels, int n_features, const int32_t* resolutions,
                                    const int64_t* offsets, float bound, int threads) {
  const Grid g = make_grid(dim, n_planes, axes, n_levels, n_features, resolutions, offsets, bound);
  const bool ok = dispatch(dim, n_features, [&](auto d, auto f) {
    constexpr int D = decltype(d)::value, F = decltype(f)::value;
    if (grad_table != nullptr) backward_table<D, F>(g, xyz, n, grad_out, grad_table, threads);
    if (grad_xyz != nullptr) backward_xyz<D, F>(g, xyz, n, table, grad_out, grad_xyz, threads);
  });
  return ok ? 0 : 1;
}

}  // extern "C"
