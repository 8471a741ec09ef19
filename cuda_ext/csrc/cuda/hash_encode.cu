// Multi-resolution hash-grid encoders on CUDA: the tri-plane encoder (three 2D grids) and the motion
// aligner's 3D grid, one implementation templated on the grid dimension D and the features per level F.
//
// Same layout and maths as cpu/hash_encode.cpp and instag/kernels/hash_encode_ref.py (keep them identical):
// a "column" is one (plane, level) pair; the table is [n_planes, plane_size, F] with level l of a plane at
// entries [offsets[l], offsets[l+1]); the output is [n, n_planes * n_levels * F], plane-major, then level,
// then feature. Points map from [-bound, bound] to [0, 1] and are clamped; the last cell is closed.
//
// Plain CUDA on raw pointers with an extern "C" API taking the stream as void*, bound with ctypes: no torch
// headers. Built without --use_fast_math, so the division mapping a point to [0, 1] is IEEE and the cell a
// point falls in is the same as on the CPU and in torch.

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "grid_common.h"

namespace {

using instag_grid::dispatch;
using instag_grid::Level;
using instag_grid::make_level;

constexpr int kMaxLevels = 32;
constexpr int kThreads = 256;
// Coarse levels whose table slice fits accumulate their gradient in shared memory first: thousands of
// points hit each of their few entries, and global atomics on one address serialise.
constexpr int kSharedGradFloats = 4096;
constexpr int kForwardSharedBytes = 48 * 1024;  // no opt-in needed below this


// Passed by value (about 1.3 KB of kernel parameters), so the kernels read it from constant memory.
struct Grid {
  int n_planes;
  int axes[3][3];  // [plane][grid axis] → xyz coordinate
  int n_levels;
  Level levels[kMaxLevels];
  float bound;
  int64_t plane_size;
};

// The hash's per-axis primes; d is a compile-time constant after unrolling.
__device__ __forceinline__ uint32_t prime(int d) { return d == 0 ? 1u : (d == 1 ? 2654435761u : 805459861u); }

template <int D>
struct Cell {
  uint32_t index[1 << D];
  float weight[1 << D];
  float frac[D];
};

__device__ __forceinline__ float to_unit(float x, float bound, bool* inside) {
  const float u = (x + bound) / (2.0f * bound);
  *inside = u >= 0.0f && u <= 1.0f;
  // As on the CPU: NaN fails both tests and lands on 0 (never an index outside the table); ±inf and huge values
  // clamp like any point outside the grid.
  return u > 0.0f ? (u < 1.0f ? u : 1.0f) : 0.0f;
}

template <int D>
__device__ __forceinline__ void locate(const float* __restrict__ point, const int* axes, const Level& lv, float bound,
                                       Cell<D>& cell) {
  uint32_t base[D];
#pragma unroll
  for (int d = 0; d < D; ++d) {
    bool inside;
    // __fmul_rn: never contracted into an FMA, so pos rounds exactly as on the CPU.
    const float pos = __fmul_rn(to_unit(point[axes[d]], bound, &inside), lv.res);
    const int i = min(static_cast<int>(pos), lv.last);
    base[d] = static_cast<uint32_t>(i);
    cell.frac[d] = pos - static_cast<float>(i);
  }
  const uint32_t side = static_cast<uint32_t>(lv.last) + 2;
#pragma unroll
  for (int c = 0; c < (1 << D); ++c) {
    uint32_t index = 0, stride = 1;
    float weight = 1.0f;
#pragma unroll
    for (int d = 0; d < D; ++d) {
      const uint32_t bit = (c >> d) & 1u;
      const uint32_t coord = base[d] + bit;
      if (lv.dense) {
        index += coord * stride;
        stride *= side;
      } else {
        index ^= coord * prime(d);
      }
      weight *= bit ? cell.frac[d] : 1.0f - cell.frac[d];
    }
    cell.index[c] = lv.dense ? index : index & lv.mask;
    cell.weight[c] = weight;
  }
}

// Forward: a block encodes a tile of points for every column into shared memory (neighbouring threads take
// neighbouring points of the same level, so their table reads stay close), then writes the tile's rows out
// as one contiguous, coalesced stretch.
template <int D, int F>
__global__ void forward_kernel(const Grid g, const float* __restrict__ xyz, int64_t n, const float* __restrict__ table,
                               float* __restrict__ out, int tile_points) {
  extern __shared__ float tile[];
  const int columns = g.n_planes * g.n_levels;
  const int row = columns * F;
  const int ld = row | 1;  // odd stride: threads writing neighbouring points hit different banks
  const int64_t first = static_cast<int64_t>(blockIdx.x) * tile_points;
  const int count = static_cast<int>(min(static_cast<int64_t>(tile_points), n - first));
  for (int k = threadIdx.x; k < count * columns; k += blockDim.x) {
    const int pt = k % count, column = k / count;
    const int p = column / g.n_levels;
    const Level& lv = g.levels[column % g.n_levels];
    Cell<D> cell;
    locate<D>(xyz + 3 * (first + pt), g.axes[p], lv, g.bound, cell);
    const float* level = table + (p * g.plane_size + lv.offset) * F;
    float acc[F] = {};
#pragma unroll
    for (int c = 0; c < (1 << D); ++c) {
      const float* entry = level + static_cast<int64_t>(cell.index[c]) * F;
#pragma unroll
      for (int f = 0; f < F; ++f) acc[f] += cell.weight[c] * __ldg(entry + f);
    }
#pragma unroll
    for (int f = 0; f < F; ++f) tile[pt * ld + column * F + f] = acc[f];
  }
  __syncthreads();
  float* dst = out + first * row;
  for (int k = threadIdx.x; k < count * row; k += blockDim.x) dst[k] = tile[(k / row) * ld + k % row];
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr bool kVectorAtomics = true;  // Hopper adds a float2 atomically: half the atomic operations
#else
constexpr bool kVectorAtomics = false;
#endif

template <int F>
__device__ __forceinline__ void atomic_add_global(float* entry, const float (&value)[F]) {
  if constexpr (kVectorAtomics && F % 2 == 0) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#pragma unroll
    for (int f = 0; f < F; f += 2) atomicAdd(reinterpret_cast<float2*>(entry + f), make_float2(value[f], value[f + 1]));
#endif
  } else {
#pragma unroll
    for (int f = 0; f < F; ++f) atomicAdd(entry + f, value[f]);
  }
}

// Table gradient: blockIdx.x is the column, blockIdx.y strides over points. Blocks are scheduled x-first, so
// the blocks of all columns for the same points run together and share those rows of grad_out in L2.
template <int D, int F>
__global__ void backward_table_kernel(const Grid g, const float* __restrict__ xyz, int64_t n,
                                      const float* __restrict__ grad_out, float* __restrict__ grad_table) {
  __shared__ float local[kSharedGradFloats];
  const int columns = g.n_planes * g.n_levels;
  const int column = blockIdx.x;
  const int p = column / g.n_levels;
  const Level& lv = g.levels[column % g.n_levels];
  float* slice = grad_table + (p * g.plane_size + lv.offset) * F;
  const int floats = static_cast<int>(min(lv.size * F, static_cast<int64_t>(kSharedGradFloats + 1)));
  const bool shared = floats <= kSharedGradFloats;  // uniform over the block
  if (shared) {
    for (int k = threadIdx.x; k < floats; k += blockDim.x) local[k] = 0.0f;
    __syncthreads();
  }
  const int64_t row = static_cast<int64_t>(columns) * F;
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.y) * blockDim.x) {
    Cell<D> cell;
    locate<D>(xyz + 3 * i, g.axes[p], lv, g.bound, cell);
    float grad[F];
#pragma unroll
    for (int f = 0; f < F; ++f) grad[f] = __ldg(grad_out + i * row + column * F + f);
#pragma unroll
    for (int c = 0; c < (1 << D); ++c) {
      float value[F];
#pragma unroll
      for (int f = 0; f < F; ++f) value[f] = cell.weight[c] * grad[f];
      if (shared) {
#pragma unroll
        for (int f = 0; f < F; ++f) atomicAdd(local + cell.index[c] * F + f, value[f]);
      } else {
        atomic_add_global<F>(slice + static_cast<int64_t>(cell.index[c]) * F, value);
      }
    }
  }
  if (shared) {
    __syncthreads();
    for (int k = threadIdx.x; k < floats; k += blockDim.x) {
      if (local[k] != 0.0f) atomicAdd(slice + k, local[k]);
    }
  }
}

// Point gradient: one thread per point over all columns; each point owns its row, so no atomics.
template <int D, int F>
__global__ void backward_xyz_kernel(const Grid g, const float* __restrict__ xyz, int64_t n,
                                    const float* __restrict__ table, const float* __restrict__ grad_out,
                                    float* __restrict__ grad_xyz) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float* point = xyz + 3 * i;
  bool inside[3];
  for (int k = 0; k < 3; ++k) to_unit(point[k], g.bound, &inside[k]);
  const float* go = grad_out + i * g.n_planes * g.n_levels * F;
  float grad[3] = {0.0f, 0.0f, 0.0f};
  for (int p = 0; p < g.n_planes; ++p) {
    for (int l = 0; l < g.n_levels; ++l, go += F) {
      const Level& lv = g.levels[l];
      Cell<D> cell;
      locate<D>(point, g.axes[p], lv, g.bound, cell);
      const float* level = table + (p * g.plane_size + lv.offset) * F;
      float dfrac[D] = {};
#pragma unroll
      for (int c = 0; c < (1 << D); ++c) {
        const float* entry = level + static_cast<int64_t>(cell.index[c]) * F;
        float dot = 0.0f;  // d(loss)/d(weight of corner c)
#pragma unroll
        for (int f = 0; f < F; ++f) dot += __ldg(go + f) * __ldg(entry + f);
#pragma unroll
        for (int d = 0; d < D; ++d) {
          float dw = ((c >> d) & 1) ? 1.0f : -1.0f;  // d(weight)/d(frac_d): the other axes' factors
#pragma unroll
          for (int e = 0; e < D; ++e) {
            if (e != d) dw *= ((c >> e) & 1) ? cell.frac[e] : 1.0f - cell.frac[e];
          }
          dfrac[d] += dot * dw;
        }
      }
#pragma unroll
      for (int d = 0; d < D; ++d) {
        const int axis = g.axes[p][d];
        if (inside[axis]) grad[axis] += dfrac[d] * lv.dpos_dx;
      }
    }
  }
  for (int k = 0; k < 3; ++k) grad_xyz[3 * i + k] = grad[k];
}

constexpr int kUnsupported = -1;

// Fills `g` from the host arrays; false when the grid is outside what the kernels are compiled for.
bool make_grid(int dim, int n_planes, const int32_t* axes, int n_levels, const int32_t* resolutions,
               const int64_t* offsets, float bound, Grid& g) {
  if ((dim != 2 && dim != 3) || n_planes < 1 || n_planes > 3 || n_levels < 1 || n_levels > kMaxLevels) return false;
  g.n_planes = n_planes;
  g.n_levels = n_levels;
  g.bound = bound;
  g.plane_size = offsets[n_levels];
  for (int p = 0; p < n_planes; ++p) {
    for (int d = 0; d < dim; ++d) g.axes[p][d] = axes[p * dim + d];
  }
  for (int l = 0; l < n_levels; ++l) {
    g.levels[l] = make_level(dim, l, resolutions, offsets, bound);
  }
  return true;
}


int blocks_for(int64_t n, int threads) { return static_cast<int>((n + threads - 1) / threads); }

}  // namespace

extern "C" {

// out: [n, n_planes * n_levels * n_features] on the device, overwritten. Host arrays describe the grid.
// Returns 0, -1 for an unsupported grid, or the CUDA error of the launch.
int instag_grid_encode_forward_cuda(const float* xyz, int64_t n, const float* table, float* out, int dim,
                                    int n_planes, const int32_t* axes, int n_levels, int n_features,
                                    const int32_t* resolutions, const int64_t* offsets, float bound, void* stream) {
  Grid g;
  if (!make_grid(dim, n_planes, axes, n_levels, resolutions, offsets, bound, g)) return kUnsupported;
  const int ld = (n_planes * n_levels * n_features) | 1;
  const int tile_points = max(1, min(kThreads, kForwardSharedBytes / (ld * static_cast<int>(sizeof(float)))));
  const size_t shared = static_cast<size_t>(tile_points) * ld * sizeof(float);
  auto s = static_cast<cudaStream_t>(stream);
  const bool ok = dispatch(dim, n_features, [&](auto d, auto f) {
    if (n == 0) return;
    forward_kernel<decltype(d)::value, decltype(f)::value>
        <<<blocks_for(n, tile_points), kThreads, shared, s>>>(g, xyz, n, table, out, tile_points);
  });
  return ok ? static_cast<int>(cudaGetLastError()) : kUnsupported;
}

// grad_table: [n_planes, plane_size, n_features] and grad_xyz: [n, 3] on the device, each overwritten, each
// skipped when null. Returns 0, -1 for an unsupported grid, or the CUDA error of the launches.
int instag_grid_encode_backward_cuda(const float* xyz, int64_t n, const float* table, const float* grad_out,
                                     float* grad_table, float* grad_xyz, int dim, int n_planes, const int32_t* axes,
                                     int n_levels, int n_features, const int32_t* resolutions,
                                     const int64_t* offsets, float bound, void* stream) {
  Grid g;
  if (!make_grid(dim, n_planes, axes, n_levels, resolutions, offsets, bound, g)) return kUnsupported;
  auto s = static_cast<cudaStream_t>(stream);
  int device = 0, sms = 1;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int columns = n_planes * n_levels;
  // Enough blocks per column that all of them together fill the GPU about eight blocks per SM, in one wave.
  const int point_blocks = max(1, min(blocks_for(n, kThreads), 8 * sms / columns));
  const bool ok = dispatch(dim, n_features, [&](auto d, auto f) {
    constexpr int D = decltype(d)::value, F = decltype(f)::value;
    if (grad_table != nullptr) {
      cudaMemsetAsync(grad_table, 0, sizeof(float) * n_planes * g.plane_size * F, s);
      if (n > 0) {
        backward_table_kernel<D, F><<<dim3(columns, point_blocks), kThreads, 0, s>>>(g, xyz, n, grad_out, grad_table);
      }
    }
    if (grad_xyz != nullptr && n > 0) {
      backward_xyz_kernel<D, F><<<blocks_for(n, kThreads), kThreads, 0, s>>>(g, xyz, n, table, grad_out, grad_xyz);
    }
  });
  return ok ? static_cast<int>(cudaGetLastError()) : kUnsupported;
}

}  // extern "C"
