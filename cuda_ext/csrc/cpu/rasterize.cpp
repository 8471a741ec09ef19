// Tile rasterizer for projected Gaussians on the CPU: binning into 16x16 tiles, then front-to-back alpha
// compositing, forward and backward.
//
// Inputs are screen-space Gaussians (means2d, conics, opacities, features, radii); the tile lists are CSR
// (offsets, ids), each sorted nearest first. The arithmetic mirrors instag/kernels/rasterize_ref.py: pixel
// centres at (x + 0.5, y + 0.5); alpha = min(0.99, opacity * exp(power)); contributions with power > 0 or
// alpha < 1/255 are skipped; a pixel stops before the Gaussian that would take its transmittance below 1e-4.
//
// Speed comes from SIMD across pixels: kLanes neighbouring pixels of a tile row walk their share of the
// tile's list together, every step branch-free with per-lane masks. The lanes are GCC/Clang vector
// extensions, so the same source becomes AVX-512, AVX2, SSE or NEON code without intrinsics; exp is our own
// polynomial for the same reason (a libm call would force scalar code). A tile's list holds every Gaussian
// whose 3-sigma square touches the tile, and a lane group meets only about a sixth of them, so each tile
// first splits its list by row, keeping with each entry the span of that row where its alpha can reach 1/255,
// and a lane group walks only the entries whose span meets it. The spans are loosened a little, so that they
// never leave out a pixel the arithmetic would draw: the outputs are bit for bit those of walking the whole
// list. Threads split the tiles (dynamic schedule: list lengths vary a lot). In the backward pass a Gaussian
// touches several tiles, so each tile writes its gradients into the slots of its own list entries and a final
// pass sums the slots per Gaussian: race-free without atomics, and deterministic.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int kTile = 16;
// Pixels composited together: one hardware vector of floats. Wider than the hardware is much slower
// (measured: 16 lanes on AVX2 run 5x slower than 8), narrower leaves width unused.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;  // SSE, NEON
#endif
constexpr float kAlphaMin = 1.0f / 255.0f;
constexpr float kAlphaMax = 0.99f;
constexpr float kTMin = 1e-4f;

static_assert(kTile % kLanes == 0, "a lane group must not straddle tiles");

typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef int32_t vi __attribute__((vector_size(4 * kLanes)));

inline vf lane_index() {
    vf v;
    for (int l = 0; l < kLanes; ++l) v[l] = static_cast<float>(l);
    return v;
}

inline bool any(vi m) {
    int32_t r = 0;
    for (int l = 0; l < kLanes; ++l) r |= m[l];
    return r != 0;
}

inline float sum(vf v) {
    float s = 0.0f;
    for (int l = 0; l < kLanes; ++l) s += v[l];
    return s;
}

// exp(x) for x <= 0, relative error ~1e-7 (Cephes-style: x = n ln2 + r with |r| <= ln2 / 2, a degree-5
// polynomial for e^r, 2^n written into the exponent bits). Below -80 it returns ~1e-35, far under any
// alpha threshold, so n never leaves the range of normal floats.
inline vf exp_neg(vf x) {
    x = x > -80.0f ? x : -80.0f;
    // n = an integer within 1/2 of x / ln2 (truncation of a non-positive number rounds it up).
    const vf n = __builtin_convertvector(__builtin_convertvector(x * 1.44269504088896341f - 0.5f, vi), vf);
    const vf r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    vf p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)bits;  // same-size vector cast: reinterprets the bits
}

// Alpha of one Gaussian at kLanes pixels (offsets dx, common dy), 0 where it is skipped; G = exp(power).
// Forward and backward both go through here so that they take the same skip decisions.
inline vf gaussian_alpha(float a, float b, float c, float op, vf dx, float dy, vf& G) {
    const vf power = -0.5f * (a * dx * dx + c * dy * dy) - b * dx * dy;
    G = exp_neg(power);
    const vf raw = op * G;
    const vf alpha = raw < kAlphaMax ? raw : kAlphaMax;
    return (power <= 0.0f) & (alpha >= kAlphaMin) ? alpha : 0.0f;
}

// One tile's Gaussians gathered into contiguous arrays (structure of arrays), nearest first, with the
// pixel-centre rectangle [x_lo, x_hi] x [y_lo, y_hi] outside which a Gaussian's alpha is below kAlphaMin
// (so it is skipped anyway), and what its span on a row takes (`RowLists`).
struct TileGaussians {
    // row_w2: the squared half-width of the span on the row through the mean; row_shrink: how fast it
    // narrows with the row's distance dy (w^2 = row_w2 - row_shrink dy^2); row_shear: how far its middle
    // moves per unit of dy (middle = mx - row_shear dy).
    std::vector<float> mx, my, ca, cb, cc, op, feat, x_lo, x_hi, y_lo, y_hi, row_w2, row_shrink, row_shear;
    int n = 0;

    void gather(const float* means2d, const float* conics, const float* opacities, const float* features,
                int channels, const int32_t* ids, int count) {
        n = count;
        for (auto* v : {&mx, &my, &ca, &cb, &cc, &op, &x_lo, &x_hi, &y_lo, &y_hi, &row_w2, &row_shrink, &row_shear})
            v->resize(n);
        feat.resize(static_cast<size_t>(n) * channels);
        for (int j = 0; j < n; ++j) {
            const int64_t g = ids[j];
            mx[j] = means2d[2 * g];
            my[j] = means2d[2 * g + 1];
            const float a = ca[j] = conics[3 * g], b = cb[j] = conics[3 * g + 1], c = cc[j] = conics[3 * g + 2];
            op[j] = opacities[g];
            std::copy(features + g * channels, features + (g + 1) * channels, feat.begin() + static_cast<size_t>(j) * channels);
            // alpha >= kAlphaMin where a dx^2 + 2 b dx dy + c dy^2 <= k = 2 ln(op / kAlphaMin). On a row at
            // offset dy that is |dx + b dy / a| <= sqrt((k - dy^2 det / a) / a); the extremes over all rows
            // give the box. The margins (0.1 % + 0.01 px, and on k 0.1 % + 1e-3) keep both conservative under
            // float rounding.
            const float det = a * c - b * b;
            float ext_x = INFINITY, ext_y = INFINITY;
            row_w2[j] = INFINITY;
            row_shrink[j] = row_shear[j] = 0.0f;
            if (op[j] < kAlphaMin) {
                ext_x = ext_y = -INFINITY;  // never drawn
            } else if (a > 0.0f && c > 0.0f && det > 0.0f) {
                const float k = 2.0f * std::log(op[j] / kAlphaMin);
                ext_x = std::sqrt(k * c / det) * 1.001f + 0.01f;
                ext_y = std::sqrt(k * a / det) * 1.001f + 0.01f;
                row_w2[j] = (k * 1.001f + 1e-3f) / a;
                row_shrink[j] = det / (a * a);
                row_shear[j] = b / a;
            }
            x_lo[j] = mx[j] - ext_x;
            x_hi[j] = mx[j] + ext_x;
            y_lo[j] = my[j] - ext_y;
            y_hi[j] = my[j] + ext_y;
        }
    }
};

// A tile's list split by row: row r's entries are the Gaussians whose box covers that row's pixel centres
// within the tile, in list order (so nearest first), each with the pixel-centre span [lo, hi] of the row
// outside which its alpha is below kAlphaMin.
struct RowLists {
    std::vector<int32_t> ids, first_row, last_row;
    std::vector<float> lo, hi;
    int start[kTile + 1];  // row r's entries are start[r] .. start[r + 1]

    void build(const TileGaussians& gs, int tile_x0, int tile_y0) {
        const float x_first = tile_x0 + 0.5f, x_last = tile_x0 + kTile - 0.5f;
        first_row.resize(gs.n);
        last_row.resize(gs.n);
        std::fill(start, start + kTile + 1, 0);
        for (int j = 0; j < gs.n; ++j) {
            first_row[j] = 0;
            last_row[j] = -1;
            if (!(gs.x_hi[j] >= x_first && gs.x_lo[j] <= x_last)) continue;
            const float r0 = std::max(std::ceil(gs.y_lo[j] - 0.5f - tile_y0), 0.0f);
            const float r1 = std::min(std::floor(gs.y_hi[j] - 0.5f - tile_y0), static_cast<float>(kTile - 1));
            if (!(r0 <= r1)) continue;
            first_row[j] = static_cast<int>(r0);
            last_row[j] = static_cast<int>(r1);
            for (int r = first_row[j]; r <= last_row[j]; ++r) ++start[r + 1];
        }
        for (int r = 0; r < kTile; ++r) start[r + 1] += start[r];
        ids.resize(start[kTile]);
        lo.resize(start[kTile]);
        hi.resize(start[kTile]);
        int cursor[kTile];
        std::copy(start, start + kTile, cursor);
        for (int j = 0; j < gs.n; ++j) {
            for (int r = first_row[j]; r <= last_row[j]; ++r) {
                const int e = cursor[r]++;
                const float dy = tile_y0 + r + 0.5f - gs.my[j];
                const float half_sq = gs.row_w2[j] - gs.row_shrink[j] * dy * dy;
                const float half = std::sqrt(std::max(half_sq, 0.0f)) * 1.001f + 0.02f;
                const float mid = gs.mx[j] - gs.row_shear[j] * dy;
                ids[e] = j;
                lo[e] = mid - half;
                hi[e] = mid + half;
            }
        }
    }

    // Row r's entries whose span meets the pixel centres x_first .. x_last, written to `hits` (their indices
    // in the tile list, in order) without a branch per entry; returns how many.
    int meeting(int r, float x_first, float x_last, std::vector<int32_t>& hits) const {
        hits.resize(start[r + 1] - start[r]);
        int n_hits = 0;
        for (int e = start[r]; e < start[r + 1]; ++e) {
            hits[n_hits] = ids[e];
            n_hits += (hi[e] >= x_first) & (lo[e] <= x_last);
        }
        return n_hits;
    }
};

// Tiles overlapped by the square box of radius r around (mx, my), clamped to the grid; same arithmetic as
// bin_tiles in rasterize_ref.py so both backends build identical lists.
struct TileRange {
    int x0, x1, y0, y1;
};

inline TileRange tile_range(float mx, float my, float r, int tiles_x, int tiles_y) {
    // Clamp while still a float: boxes of huge Gaussians may not fit in an int.
    auto clamp = [](float v, int hi) { return static_cast<int>(std::min(std::max(v, 0.0f), static_cast<float>(hi))); };
    return {clamp(std::floor((mx - r) / kTile), tiles_x - 1), clamp(std::floor((mx + r) / kTile), tiles_x - 1),
            clamp(std::floor((my - r) / kTile), tiles_y - 1), clamp(std::floor((my + r) / kTile), tiles_y - 1)};
}

// Whether a Gaussian goes into the tile lists: a non-finite mean is drawn nowhere (the compositing's range test
// fails for it), and a NaN one would pass the clamp in tile_range and index far outside the lists.
inline bool binnable(const float* means2d, int64_t g) {
    return std::isfinite(means2d[2 * g]) && std::isfinite(means2d[2 * g + 1]);
}

// Compositing of kLanes pixels of row y from x0 through `hits` (indices in the tile list, nearest first);
// acc holds C vectors.
void forward_group(const TileGaussians& gs, const int32_t* hits, int n_hits, int C, int x0, int y, int width,
                   float* out_features, float* out_trans, int32_t* out_count, vf* acc) {
    for (int k = 0; k < C; ++k) acc[k] = vf{};
    const vf px = lane_index() + (x0 + 0.5f);
    const float py = y + 0.5f;
    vf T = vf{} + 1.0f;
    vi count = vi{};
    vi live = lane_index() < static_cast<float>(width - x0);  // lanes past the image edge start finished
    for (int h = 0; h < n_hits; ++h) {
        // Finished lanes draw nothing more (`live` masks them), so stopping early only saves work: asked every
        // 16 entries, as the question is a reduction across lanes.
        if ((h & 15) == 15 && !any(live)) break;
        const int j = hits[h];
        vf G;
        const vf alpha = gaussian_alpha(gs.ca[j], gs.cb[j], gs.cc[j], gs.op[j], px - gs.mx[j], py - gs.my[j], G);
        const vf next_T = T * (1.0f - alpha);
        const vi drawn = alpha > 0.0f;
        live &= ~(drawn & (next_T < kTMin));
        const vi draw = live & drawn;
        const vf w = draw ? alpha * T : 0.0f;
        T = draw ? next_T : T;
        count = draw ? j + 1 : count;
        const float* f = &gs.feat[static_cast<size_t>(j) * C];
        for (int k = 0; k < C; ++k) acc[k] += w * f[k];
    }
    for (int l = 0; l < kLanes && x0 + l < width; ++l) {
        const int64_t p = static_cast<int64_t>(y) * width + x0 + l;
        for (int k = 0; k < C; ++k) out_features[p * C + k] = acc[k][l];
        out_trans[p] = T[l];
        out_count[p] = count[l];
    }
}

// The backward pass of `forward_group` for the same pixels and hits: walks them back to front from each
// lane's last drawn Gaussian, adding each entry's per-lane gradients into its slots of `partial` (stride
// floats per tile-list entry: d mean (2), d conic (3), d opacity, d features (C)); work holds 2 C vectors.
void backward_group(const TileGaussians& gs, const int32_t* hits, int n_hits, int C, int x0, int y, int width,
                    const float* trans, const int32_t* count, const float* grad_features, const float* grad_trans,
                    vf* partial, vf* work) {
    const int stride = 6 + C;
    vf* g_feat = work;
    vf* behind = work + C;
    const vf px = lane_index() + (x0 + 0.5f);
    const float py = y + 0.5f;
    vf T_final = vf{} + 1.0f, g_trans{};
    vi n_drawn{};
    for (int k = 0; k < C; ++k) g_feat[k] = behind[k] = vf{};
    for (int l = 0; l < kLanes && x0 + l < width; ++l) {
        const int64_t p = static_cast<int64_t>(y) * width + x0 + l;
        T_final[l] = trans[p];
        g_trans[l] = grad_trans[p];
        n_drawn[l] = count[p];
        for (int k = 0; k < C; ++k) g_feat[k][l] = grad_features[p * C + k];
    }
    int longest = 0;
    for (int l = 0; l < kLanes; ++l) longest = std::max(longest, static_cast<int>(n_drawn[l]));
    // d T_final / d alpha_j = -T_final / (1 - alpha_j): the common factor -g_trans T_final.
    const vf g_from_trans = -g_trans * T_final;
    vf T = T_final;
    int h = n_hits - 1;
    while (h >= 0 && hits[h] >= longest) --h;  // behind every lane's last drawn Gaussian
    for (; h >= 0; --h) {
        const int j = hits[h];
        const float a = gs.ca[j], b = gs.cb[j], c = gs.cc[j], op = gs.op[j];
        const vf dx = px - gs.mx[j];
        const float dy = py - gs.my[j];
        vf G;
        vf alpha = gaussian_alpha(a, b, c, op, dx, dy, G);
        alpha = j < n_drawn ? alpha : 0.0f;
        const vf inv_one_minus = 1.0f / (1.0f - alpha);
        T *= inv_one_minus;  // now the transmittance in front of Gaussian j
        const vf w = alpha * T;
        const float* f = &gs.feat[static_cast<size_t>(j) * C];
        vf* slot = &partial[static_cast<size_t>(j) * stride];
        vf g_alpha = g_from_trans * inv_one_minus;
        for (int k = 0; k < C; ++k) {
            // d out_k / d alpha_j = f_jk T_j - behind_k / (1 - alpha_j)
            g_alpha += g_feat[k] * (f[k] * T - behind[k] * inv_one_minus);
            behind[k] += w * f[k];
            slot[6 + k] += w * g_feat[k];
        }
        // Skipped lanes and lanes where alpha was clamped to kAlphaMax (there it depends on neither opacity
        // nor position) pass no gradient on.
        const vf raw = op * G;
        const vf g = (alpha > 0.0f) & (raw <= kAlphaMax) ? g_alpha : 0.0f;
        const vf g_power = raw * g;
        slot[0] += g_power * (a * dx + b * dy);
        slot[1] += g_power * (b * dx + c * dy);
        slot[2] += -0.5f * g_power * dx * dx;
        slot[3] += -g_power * dx * dy;
        slot[4] += -0.5f * g_power * dy * dy;
        slot[5] += G * g;
    }
}

}  // namespace

extern "C" {

// The order the tiles are filled in: the indices of the Gaussians with radii [N] > 0, nearest first by depths
// [N], ties by index (what a stable sort gives). Writes them to order [N] and returns how many there are.
// A least-significant-digit radix sort (three passes of 11 bits) of the depths' bits, made to sort as their
// values do: a stable sort in linear time, where a comparison sort of a face's 20k Gaussians took about 1 ms.
int64_t instag_rasterize_depth_order(const float* depths, const int32_t* radii, int64_t n, int64_t* order) {
    std::vector<uint32_t> keys, keys_tmp;
    std::vector<int64_t> tmp;
    keys.reserve(n);
    int64_t n_visible = 0;
    for (int64_t g = 0; g < n; ++g) {
        if (radii[g] <= 0) continue;
        uint32_t bits;
        std::memcpy(&bits, &depths[g], sizeof bits);
        // Flipping the sign bit of a non-negative float and every bit of a negative one orders the bit
        // patterns as the values.
        keys.push_back(bits & 0x80000000u ? ~bits : bits | 0x80000000u);
        order[n_visible++] = g;
    }
    keys_tmp.resize(n_visible);
    tmp.resize(n_visible);
    constexpr int kBits = 11, kBuckets = 1 << kBits;
    int64_t* src = order;
    int64_t* dst = tmp.data();
    std::vector<int64_t> start(kBuckets + 1);
    for (int shift = 0; shift < 32; shift += kBits) {
        std::fill(start.begin(), start.end(), 0);
        for (int64_t i = 0; i < n_visible; ++i) ++start[((keys[i] >> shift) & (kBuckets - 1)) + 1];
        for (int b = 0; b < kBuckets; ++b) start[b + 1] += start[b];
        for (int64_t i = 0; i < n_visible; ++i) {
            const int64_t at = start[(keys[i] >> shift) & (kBuckets - 1)]++;
            keys_tmp[at] = keys[i];
            dst[at] = src[i];
        }
        keys.swap(keys_tmp);
        std::swap(src, dst);
    }
    if (src != order) std::copy(src, src + n_visible, order);
    return n_visible;
}

// Binning, pass 1. order [V] lists the visible Gaussians nearest first; radii [N] their pixel radii.
// Writes offsets [tiles + 1] (tile t's list will be entries offsets[t] .. offsets[t + 1]) and returns the
// total number of entries, so that the caller can allocate them.
int64_t instag_rasterize_count_tiles(const float* means2d, const int32_t* radii, const int64_t* order,
                                     int n_visible, int width, int height, int32_t* offsets) {
    const int tiles_x = (width + kTile - 1) / kTile;
    const int tiles_y = (height + kTile - 1) / kTile;
    std::fill(offsets, offsets + tiles_x * tiles_y + 1, 0);
    for (int i = 0; i < n_visible; ++i) {
        const int64_t g = order[i];
        if (!binnable(means2d, g)) continue;
        const TileRange t = tile_range(means2d[2 * g], means2d[2 * g + 1], static_cast<float>(radii[g]), tiles_x, tiles_y);
        for (int ty = t.y0; ty <= t.y1; ++ty)
            for (int tx = t.x0; tx <= t.x1; ++tx) ++offsets[ty * tiles_x + tx + 1];
    }
    for (int t = 0; t < tiles_x * tiles_y; ++t) offsets[t + 1] += offsets[t];
    return offsets[tiles_x * tiles_y];
}

// Binning, pass 2: writes ids [M]. Visiting Gaussians nearest first leaves every tile's list depth-sorted.
void instag_rasterize_fill_tiles(const float* means2d, const int32_t* radii, const int64_t* order, int n_visible,
                                 int width, int height, const int32_t* offsets, int32_t* ids) {
    const int tiles_x = (width + kTile - 1) / kTile;
    const int tiles_y = (height + kTile - 1) / kTile;
    std::vector<int32_t> cursor(offsets, offsets + tiles_x * tiles_y);
    for (int i = 0; i < n_visible; ++i) {
        const int64_t g = order[i];
        if (!binnable(means2d, g)) continue;
        const TileRange t = tile_range(means2d[2 * g], means2d[2 * g + 1], static_cast<float>(radii[g]), tiles_x, tiles_y);
        for (int ty = t.y0; ty <= t.y1; ++ty)
            for (int tx = t.x0; tx <= t.x1; ++tx) ids[cursor[ty * tiles_x + tx]++] = static_cast<int32_t>(g);
    }
}

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
        RowLists rows;
        std::vector<int32_t> hits;
        std::vector<vf> acc(channels);
#pragma omp for schedule(dynamic, 1)
        for (int tile = 0; tile < n_tiles; ++tile) {
            const int start = offsets[tile];
            gs.gather(means2d, conics, opacities, features, channels, ids + start, offsets[tile + 1] - start);
            const int tx = tile % tiles_x, ty = tile / tiles_x;
            rows.build(gs, tx * kTile, ty * kTile);
            for (int y = ty * kTile; y < std::min((ty + 1) * kTile, height); ++y) {
                for (int x0 = tx * kTile; x0 < std::min((tx + 1) * kTile, width); x0 += kLanes) {
                    const int n_hits = rows.meeting(y - ty * kTile, x0 + 0.5f, x0 + kLanes - 0.5f, hits);
                    forward_group(gs, hits.data(), n_hits, channels, x0, y, width, out_features, out_trans, out_count,
                                  acc.data());
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
        RowLists rows;
        std::vector<int32_t> hits;
        std::vector<vf> work(2 * channels);
        // Per-lane partial gradients of the tile's entries, summed over lanes once the tile is done.
        std::vector<vf> partial;
#pragma omp for schedule(dynamic, 1)
        for (int tile = 0; tile < n_tiles; ++tile) {
            const int start = offsets[tile];
            gs.gather(means2d, conics, opacities, features, channels, ids + start, offsets[tile + 1] - start);
            partial.assign(static_cast<size_t>(gs.n) * stride, vf{});
            const int tx = tile % tiles_x, ty = tile / tiles_x;
            rows.build(gs, tx * kTile, ty * kTile);
            for (int y = ty * kTile; y < std::min((ty + 1) * kTile, height); ++y) {
                for (int x0 = tx * kTile; x0 < std::min((tx + 1) * kTile, width); x0 += kLanes) {
                    const int n_hits = rows.meeting(y - ty * kTile, x0 + 0.5f, x0 + kLanes - 0.5f, hits);
                    backward_group(gs, hits.data(), n_hits, channels, x0, y, width, trans, count, grad_features,
                                   grad_trans, partial.data(), work.data());
                }
            }
            float* out = scratch + static_cast<int64_t>(start) * stride;
            for (size_t i = 0; i < partial.size(); ++i) out[i] = sum(partial[i]);
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
