// Driver for tests/kernels/test_asan.py: calls the CPU kernels' extern "C" API on hostile inputs (NaN, ±inf,
// huge, tiny and ordinary values) so that a build with -fsanitize=address reports any out-of-bounds access.
// Every buffer is a heap vector of exactly the size the API documents, so one element too far is caught.
// Prints one summary line and exits 0 when every call returned; ASan aborts the process with its report first.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

extern "C" {
int instag_grid_encode_forward_cpu(const float* xyz, int64_t n, const float* table, float* out, int dim,
                                   int n_planes, const int32_t* axes, int n_levels, int n_features,
                                   const int32_t* resolutions, const int64_t* offsets, float bound, int threads);
int instag_grid_encode_backward_cpu(const float* xyz, int64_t n, const float* table, const float* grad_out,
                                    float* grad_table, float* grad_xyz, int dim, int n_planes, const int32_t* axes,
                                    int n_levels, int n_features, const int32_t* resolutions,
                                    const int64_t* offsets, float bound, int threads);
int64_t instag_rasterize_count_tiles(const float* means2d, const int32_t* radii, const int64_t* order,
                                     int n_visible, int width, int height, int32_t* offsets);
void instag_rasterize_fill_tiles(const float* means2d, const int32_t* radii, const int64_t* order, int n_visible,
                                 int width, int height, const int32_t* offsets, int32_t* ids);
void instag_rasterize_forward(const float* means2d, const float* conics, const float* opacities,
                              const float* features, int channels, const int32_t* offsets, const int32_t* ids,
                              int width, int height, float* out_features, float* out_trans, int32_t* out_count,
                              int num_threads);
void instag_rasterize_backward(const float* means2d, const float* conics, const float* opacities,
                               const float* features, int channels, const int32_t* offsets, const int32_t* ids,
                               int width, int height, const float* trans, const int32_t* count,
                               const float* grad_features, const float* grad_trans, int n_gaussians,
                               float* scratch, float* grad_means2d, float* grad_conics, float* grad_opacities,
                               float* grad_features_out, int num_threads);
void instag_blur_separable(const float* images, int64_t n, int h, int w, const float* taps, int size, int adjoint,
                           float* out, int threads);
}

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kMax = std::numeric_limits<float>::max();
constexpr float kDenorm = std::numeric_limits<float>::denorm_min();

// Values every coordinate is drawn from: hostile ones first, then ordinary ones inside and near the grid.
const std::vector<float>& specials() {
  static const std::vector<float> v = {kNaN, -kNaN, kInf, -kInf, kMax, -kMax, 1e30f, -1e30f, 3e9f, -3e9f,
                                       2147483648.0f, -2147483648.0f, kDenorm, -kDenorm, 0.0f, -0.0f,
                                       1.0f, -1.0f, 0.999999f, -0.999999f, 1.0000001f, 0.5f, -0.25f, 1e-30f};
  return v;
}

// Deterministic pseudo-random numbers (xorshift), so a failure reproduces.
struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float pick() { return specials()[next() % specials().size()]; }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(next() % 1000003) / 1000003.0f; }
};

// Points: every special value on every axis (the others ordinary), every special triple on the diagonal,
// then random mixtures.
std::vector<float> hostile_points(Rng& rng, float bound) {
  std::vector<float> xyz;
  for (float s : specials()) {
    for (int k = 0; k < 3; ++k) {
      for (int j = 0; j < 3; ++j) xyz.push_back(j == k ? s : 0.3f * bound);
    }
    for (int j = 0; j < 3; ++j) xyz.push_back(s);
    for (int j = 0; j < 3; ++j) xyz.push_back(s * bound);
  }
  for (int i = 0; i < 2000; ++i) {
    for (int j = 0; j < 3; ++j) xyz.push_back(rng.next() % 3 == 0 ? rng.pick() : rng.uniform(-1.2f, 1.2f) * bound);
  }
  return xyz;
}

// One grid as instag/kernels/hash_encode_ref.py's grid_layout builds it; returns the number of calls made.
int run_grid(Rng& rng, int dim, int n_features, int log2_table_size, int n_levels, int base, int max_res,
             float bound) {
  std::vector<int32_t> axes = dim == 2 ? std::vector<int32_t>{0, 1, 0, 2, 1, 2} : std::vector<int32_t>{0, 1, 2};
  const int n_planes = dim == 2 ? 3 : 1;
  std::vector<int32_t> res;
  std::vector<int64_t> offsets = {0};
  const double growth = n_levels > 1 ? std::exp((std::log(max_res) - std::log(base)) / (n_levels - 1)) : 1.0;
  for (int l = 0; l < n_levels; ++l) {
    res.push_back(static_cast<int32_t>(std::floor(base * std::pow(growth, l) + 1e-9)));
    const double vertices = std::pow(res.back() + 1.0, dim);
    const double cap = std::ldexp(1.0, log2_table_size);
    offsets.push_back(offsets.back() + static_cast<int64_t>(vertices < cap ? vertices : cap));
  }
  const int64_t plane_size = offsets.back();
  std::vector<float> table(static_cast<size_t>(n_planes * plane_size * n_features));
  for (float& t : table) t = rng.uniform(-1.0f, 1.0f);
  const std::vector<float> xyz = hostile_points(rng, bound);
  const int64_t n = static_cast<int64_t>(xyz.size() / 3);
  const size_t row = static_cast<size_t>(n_planes * n_levels * n_features);
  std::vector<float> out(n * row), grad_out(n * row), grad_table(table.size()), grad_xyz(xyz.size());
  for (float& g : grad_out) g = rng.next() % 50 == 0 ? rng.pick() : rng.uniform(-1.0f, 1.0f);
  int calls = 0;
  for (int threads : {1, 2}) {
    if (instag_grid_encode_forward_cpu(xyz.data(), n, table.data(), out.data(), dim, n_planes, axes.data(),
                                       n_levels, n_features, res.data(), offsets.data(), bound, threads) != 0) {
      std::printf("forward refused dim %d features %d\n", dim, n_features);
      std::exit(3);
    }
    if (instag_grid_encode_backward_cpu(xyz.data(), n, table.data(), grad_out.data(), grad_table.data(),
                                        grad_xyz.data(), dim, n_planes, axes.data(), n_levels, n_features,
                                        res.data(), offsets.data(), bound, threads) != 0) {
      std::printf("backward refused dim %d features %d\n", dim, n_features);
      std::exit(3);
    }
    // One point at a time too: a chunk of one, so an access past a single row is not hidden by the next row.
    for (int64_t i = 0; i < n; i += 97) {
      std::vector<float> one(xyz.begin() + 3 * i, xyz.begin() + 3 * i + 3), one_out(row), one_grad(3);
      std::vector<float> one_go(grad_out.begin() + i * row, grad_out.begin() + (i + 1) * row);
      instag_grid_encode_forward_cpu(one.data(), 1, table.data(), one_out.data(), dim, n_planes, axes.data(),
                                     n_levels, n_features, res.data(), offsets.data(), bound, threads);
      instag_grid_encode_backward_cpu(one.data(), 1, table.data(), one_go.data(), grad_table.data(),
                                      one_grad.data(), dim, n_planes, axes.data(), n_levels, n_features,
                                      res.data(), offsets.data(), bound, threads);
    }
    calls += 2;
  }
  return calls;
}

// One rasterization (binning, forward, backward) of Gaussians whose every attribute may be hostile.
int run_raster(Rng& rng, int width, int height, int channels, int n_gaussians) {
  std::vector<float> means2d, conics, opacities, features;
  std::vector<int32_t> radii;
  for (int g = 0; g < n_gaussians; ++g) {
    const bool wild = g % 2 == 0;
    auto coord = [&](float extent) { return wild && rng.next() % 2 ? rng.pick() : rng.uniform(-0.2f, 1.2f) * extent; };
    means2d.push_back(coord(static_cast<float>(width)));
    means2d.push_back(coord(static_cast<float>(height)));
    const float a = wild && rng.next() % 3 == 0 ? rng.pick() : rng.uniform(0.01f, 2.0f);
    const float c = wild && rng.next() % 3 == 0 ? rng.pick() : rng.uniform(0.01f, 2.0f);
    const float b = wild && rng.next() % 3 == 0 ? rng.pick() : rng.uniform(-0.1f, 0.1f);
    conics.insert(conics.end(), {a, b, c});
    opacities.push_back(wild && rng.next() % 3 == 0 ? rng.pick() : rng.uniform(0.0f, 1.0f));
    for (int k = 0; k < channels; ++k) features.push_back(wild && rng.next() % 4 == 0 ? rng.pick() : rng.uniform(0.0f, 1.0f));
    const int32_t huge[] = {1, 2, 7, 40, 1000, 1 << 20, 1 << 30, 2147483647};
    radii.push_back(wild ? huge[rng.next() % 8] : 1 + static_cast<int32_t>(rng.next() % 12));
  }
  std::vector<int64_t> order;
  for (int g = n_gaussians - 1; g >= 0; --g) order.push_back(g);  // every Gaussian visible (radius > 0)
  const int tiles = ((width + 15) / 16) * ((height + 15) / 16);
  std::vector<int32_t> offsets(tiles + 1);
  const int64_t m = instag_rasterize_count_tiles(means2d.data(), radii.data(), order.data(), n_gaussians, width,
                                                 height, offsets.data());
  if (m < 0 || m > static_cast<int64_t>(n_gaussians) * tiles) {
    std::printf("count_tiles returned %lld entries for %d Gaussians on %d tiles\n", static_cast<long long>(m),
                n_gaussians, tiles);
    std::exit(3);
  }
  std::vector<int32_t> ids(static_cast<size_t>(m));
  instag_rasterize_fill_tiles(means2d.data(), radii.data(), order.data(), n_gaussians, width, height,
                              offsets.data(), ids.data());
  const size_t pixels = static_cast<size_t>(width) * height;
  std::vector<float> out(pixels * channels), trans(pixels);
  std::vector<int32_t> count(pixels);
  std::vector<float> grad_features(pixels * channels), grad_trans(pixels);
  for (float& g : grad_features) g = rng.next() % 50 == 0 ? rng.pick() : rng.uniform(-1.0f, 1.0f);
  for (float& g : grad_trans) g = rng.next() % 50 == 0 ? rng.pick() : rng.uniform(-1.0f, 1.0f);
  std::vector<float> scratch(static_cast<size_t>(m) * (6 + channels)), g_means(2 * n_gaussians),
      g_conics(3 * n_gaussians), g_opacities(n_gaussians), g_features(static_cast<size_t>(n_gaussians) * channels);
  for (int threads : {1, 2}) {
    instag_rasterize_forward(means2d.data(), conics.data(), opacities.data(), features.data(), channels,
                             offsets.data(), ids.data(), width, height, out.data(), trans.data(), count.data(),
                             threads);
    instag_rasterize_backward(means2d.data(), conics.data(), opacities.data(), features.data(), channels,
                              offsets.data(), ids.data(), width, height, trans.data(), count.data(),
                              grad_features.data(), grad_trans.data(), n_gaussians, scratch.data(),
                              g_means.data(), g_conics.data(), g_opacities.data(), g_features.data(), threads);
  }
  return 2;
}

}  // namespace

int main() {
  Rng rng;
  int calls = 0;
  for (int dim : {2, 3}) {
    for (int features : {1, 2, 4, 8}) {
      calls += run_grid(rng, dim, features, 6, 4, 3, 40, 0.7f);   // hashed but the first level
      calls += run_grid(rng, dim, features, 10, 4, 3, 40, 1.0f);  // dense and hashed levels mixed
    }
    calls += run_grid(rng, dim, 2, 12, 3, 1, 1, 1e-30f);  // one cell per axis, a minute bound
    calls += run_grid(rng, dim, 2, 12, 3, 1, 64, 1e30f);  // a huge bound
  }
  for (int channels : {1, 3, 5}) {
    calls += run_raster(rng, 37, 29, channels, 300);
    calls += run_raster(rng, 16, 16, channels, 50);
    calls += run_raster(rng, 1, 70, channels, 50);
  }
  // The blur on images narrower and shorter than its window, forward and adjoint.
  for (int size : {1, 3, 11}) {
    for (int h : {1, 4, 13}) {
      for (int w : {1, 5, 16}) {
        std::vector<float> images(static_cast<size_t>(2) * h * w), out(images.size()), taps(size);
        for (float& v : images) v = specials()[rng.next() % specials().size()];
        for (float& v : taps) v = 0.5f;
        for (int adjoint : {0, 1}) {
          instag_blur_separable(images.data(), 2, h, w, taps.data(), size, adjoint, out.data(), 2);
          ++calls;
        }
      }
    }
  }
  std::printf("asan driver: %d kernel calls returned\n", calls);
  return 0;
}
