// Tile rasterizer for projected Gaussians on the CPU: front-to-back alpha compositing, forward and backward.
//
// Inputs are screen-space Gaussians (means2d, conics, opacities, features) already binned into 16x16 tiles
// (CSR lists, each sorted nearest first). The arithmetic mirrors instag/kernels/rasterize_ref.py exactly:
// pixel centres at (x + 0.5, y + 0.5); alpha = min(0.99, opacity * exp(power)); contributions with
// power > 0 or alpha < 1/255 are skipped; a pixel stops before the Gaussian that would take its
// transmittance below 1e-4.
//
// Threads split the tiles (dynamic schedule: list lengths vary a lot). In the backward pass a Gaussian
// touches several tiles, so each tile writes its gradients into the slots of its own list entries and a
// final pass sums the entries per Gaussian: race-free without atomics, and deterministic.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int kTile = 16;
constexpr float kAlphaMin = 1.0f / 255.0f;
constexpr float kAlphaMax = 0.99f;
constexpr float kTMin = 1e-4f;

// One tile's Gaussians gathered into contiguous arrays (structure of arrays), nearest first.
struct TileGaussians {
    std::vector<float> mx, my, ca, cb, cc, op, feat;
    int n = 0;

    void gather(const float* means2d, const float* conics, const float* opacities, const float* features,
                int channels, const int32_t* ids, int count) {
        n = count;
        mx.resize(n); my.resize(n); ca.resize(n); cb.resize(n); cc.resize(n); op.resize(n);
        feat.resize(static_cast<size_t>(n) * channels);
        for (int j = 0; j < n; ++j) {
            const int64_t g = ids[j];
            mx[j] = means2d[2 * g];
            my[j] = means2d[2 * g + 1];
            ca[j] = conics[3 * g];
            cb[j] = conics[3 * g + 1];
            cc[j] = conics[3 * g + 2];
            op[j] = opacities[g];
            std::copy(features + g * channels, features + (g + 1) * channels, feat.begin() + static_cast<size_t>(j) * channels);
        }
    }
};

// Exponent of the 2D Gaussian at offset (dx, dy) = pixel - mean; forward and backward share it so that
// both passes take the same skip decisions.
inline float gaussian_power(float a, float b, float c, float dx, float dy) {
    return -0.5f * (a * dx * dx + c * dy * dy) - b * dx * dy;
}

struct TileRect {
    int x0, y0, x1, y1;
};

inline TileRect tile_rect(int tile, int tiles_x, int width, int height) {
    const int tx = tile % tiles_x, ty = tile / tiles_x;
    return {tx * kTile, ty * kTile, std::min((tx + 1) * kTile, width), std::min((ty + 1) * kTile, height)};
}

}  // namespace

extern "C" {

// Forward. features [N, C]; offsets [tiles + 1] and ids [M] are the tile lists.
// Writes out_features [H, W, C] (weighted sums, no background), out_trans [H, W] (final transmittance)
// and out_count [H, W] (1 + index in the tile list of the last Gaussian drawn; 0 if none), which the
// backward pass needs.
void instag_rasterize_forward(const float* means2d, const float* conics, const float* opacities,
                              const float* features, int channels, const int32_t* offsets, const int32_t* ids,
                              int width, int height, float* out_features, float* out_trans, int32_t* out_count,
                              int num_threads) {
    const int tiles_x = (width + kTile - 1) / kTile;
    const int tiles_y = (height + kTile - 1) / kTile;
    const int n_tiles = tiles_x * tiles_y;
#pragma omp parallel num_threads(num_threads)
    {
        TileGaussians gs;
        std::vector<float> acc(channels);
#pragma omp for schedule(dynamic, 1)
        for (int tile = 0; tile < n_tiles; ++tile) {
            const int start = offsets[tile];
            gs.gather(means2d, conics, opacities, features, channels, ids + start, offsets[tile + 1] - start);
            const TileRect r = tile_rect(tile, tiles_x, width, height);
            for (int y = r.y0; y < r.y1; ++y) {
                for (int x = r.x0; x < r.x1; ++x) {
                    const float px = x + 0.5f, py = y + 0.5f;
                    float T = 1.0f;
                    int count = 0;
                    std::fill(acc.begin(), acc.end(), 0.0f);
                    for (int j = 0; j < gs.n; ++j) {
                        const float dx = px - gs.mx[j], dy = py - gs.my[j];
                        const float power = gaussian_power(gs.ca[j], gs.cb[j], gs.cc[j], dx, dy);
                        if (power > 0.0f) continue;
                        const float alpha = std::min(kAlphaMax, gs.op[j] * std::exp(power));
                        if (alpha < kAlphaMin) continue;
                        const float next_T = T * (1.0f - alpha);
                        if (next_T < kTMin) break;
                        const float w = alpha * T;
                        const float* f = &gs.feat[static_cast<size_t>(j) * channels];
                        for (int k = 0; k < channels; ++k) acc[k] += w * f[k];
                        T = next_T;
                        count = j + 1;
                    }
                    const int64_t p = static_cast<int64_t>(y) * width + x;
                    std::copy(acc.begin(), acc.end(), out_features + p * channels);
                    out_trans[p] = T;
                    out_count[p] = count;
                }
            }
        }
    }
}

// Backward. grad_features [H, W, C] and grad_trans [H, W] are the incoming gradients of the forward's
// outputs; trans and count are what the forward wrote. scratch holds (6 + C) floats per list entry.
// Writes (overwrites) grad_means2d [N, 2], grad_conics [N, 3], grad_opacities [N], grad_features_out [N, C].
void instag_rasterize_backward(const float* means2d, const float* conics, const float* opacities,
                               const float* features, int channels, const int32_t* offsets, const int32_t* ids,
                               int width, int height, const float* trans, const int32_t* count,
                               const float* grad_features, const float* grad_trans, int n_gaussians,
                               float* scratch, float* grad_means2d, float* grad_conics, float* grad_opacities,
                               float* grad_features_out, int num_threads) {
    const int tiles_x = (width + kTile - 1) / kTile;
    const int tiles_y = (height + kTile - 1) / kTile;
    const int n_tiles = tiles_x * tiles_y;
    const int stride = 6 + channels;  // per entry: d mean (2), d conic (3), d opacity, d features (C)
#pragma omp parallel num_threads(num_threads)
    {
        TileGaussians gs;
        std::vector<float> behind(channels);
#pragma omp for schedule(dynamic, 1)
        for (int tile = 0; tile < n_tiles; ++tile) {
            const int start = offsets[tile];
            gs.gather(means2d, conics, opacities, features, channels, ids + start, offsets[tile + 1] - start);
            float* slots = scratch + static_cast<int64_t>(start) * stride;
            std::fill(slots, slots + static_cast<int64_t>(gs.n) * stride, 0.0f);
            const TileRect r = tile_rect(tile, tiles_x, width, height);
            for (int y = r.y0; y < r.y1; ++y) {
                for (int x = r.x0; x < r.x1; ++x) {
                    const int64_t p = static_cast<int64_t>(y) * width + x;
                    const float px = x + 0.5f, py = y + 0.5f;
                    const float T_final = trans[p];
                    const float g_trans = grad_trans[p];
                    const float* g_feat = grad_features + p * channels;
                    // behind[k] = sum over drawn Gaussians behind the current one of w_i * f_i[k].
                    std::fill(behind.begin(), behind.end(), 0.0f);
                    float T = T_final;
                    for (int j = count[p] - 1; j >= 0; --j) {
                        const float dx = px - gs.mx[j], dy = py - gs.my[j];
                        const float a = gs.ca[j], b = gs.cb[j], c = gs.cc[j];
                        const float power = gaussian_power(a, b, c, dx, dy);
                        if (power > 0.0f) continue;
                        const float G = std::exp(power);
                        const float raw = gs.op[j] * G;
                        const float alpha = std::min(kAlphaMax, raw);
                        if (alpha < kAlphaMin) continue;
                        const float inv_one_minus = 1.0f / (1.0f - alpha);
                        T *= inv_one_minus;  // transmittance in front of Gaussian j
                        const float w = alpha * T;
                        const float* f = &gs.feat[static_cast<size_t>(j) * channels];
                        float* slot = slots + static_cast<int64_t>(j) * stride;
                        // d out / d alpha_j = f_j T_j - behind / (1 - alpha_j);  d T_final / d alpha_j = -T_final / (1 - alpha_j)
                        float g_alpha = -g_trans * T_final * inv_one_minus;
                        for (int k = 0; k < channels; ++k) {
                            slot[6 + k] += w * g_feat[k];
                            g_alpha += g_feat[k] * (f[k] * T - behind[k] * inv_one_minus);
                            behind[k] += w * f[k];
                        }
                        if (raw > kAlphaMax) continue;  // clamped: alpha does not depend on opacity or position
                        slot[5] += G * g_alpha;
                        const float g_power = raw * g_alpha;
                        slot[0] += g_power * (a * dx + b * dy);
                        slot[1] += g_power * (b * dx + c * dy);
                        slot[2] += -0.5f * g_power * dx * dx;
                        slot[3] += -g_power * dx * dy;
                        slot[4] += -0.5f * g_power * dy * dy;
                    }
                }
            }
        }

        // Sum entry slots per Gaussian. Threads own disjoint Gaussians: each walks all entries but only
        // adds those whose Gaussian falls in its own contiguous id range.
        const int n_threads = omp_get_num_threads();
        const int thread = omp_get_thread_num();
        const int64_t g_begin = static_cast<int64_t>(n_gaussians) * thread / n_threads;
        const int64_t g_end = static_cast<int64_t>(n_gaussians) * (thread + 1) / n_threads;
        for (int64_t g = g_begin; g < g_end; ++g) {
            grad_means2d[2 * g] = grad_means2d[2 * g + 1] = 0.0f;
            grad_conics[3 * g] = grad_conics[3 * g + 1] = grad_conics[3 * g + 2] = 0.0f;
            grad_opacities[g] = 0.0f;
            std::fill(grad_features_out + g * channels, grad_features_out + (g + 1) * channels, 0.0f);
        }
        const int64_t n_entries = offsets[n_tiles];
        for (int64_t e = 0; e < n_entries; ++e) {
            const int64_t g = ids[e];
            if (g < g_begin || g >= g_end) continue;
            const float* slot = scratch + e * stride;
            grad_means2d[2 * g] += slot[0];
            grad_means2d[2 * g + 1] += slot[1];
            grad_conics[3 * g] += slot[2];
            grad_conics[3 * g + 1] += slot[3];
            grad_conics[3 * g + 2] += slot[4];
            grad_opacities[g] += slot[5];
            for (int k = 0; k < channels; ++k) grad_features_out[g * channels + k] += slot[6 + k];
        }
    }
}

}  // extern "C"
