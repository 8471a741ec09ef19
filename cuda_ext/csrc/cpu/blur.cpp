// Separable blur of a stack of images on the CPU: a column pass then a row pass with one set of 1D taps, zero
// outside the image (what instag/kernels/blur.py `blur_ref` does with two depthwise convolutions). Each tap is
// one multiply-add along a row, which the compiler vectorises. The backward pass is the same blur
// with the taps reversed, in the reverse order.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

// out[i, :] = Σ_k taps[k] · in[i + k − r, :] over the rows of one image [h, w]; the inner loops run along a
// row, contiguous on both sides, which the compiler vectorises.
void column_pass(const float* __restrict in, float* __restrict out, int h, int w, const float* taps, int size) {
    const int r = size / 2;
    for (int i = 0; i < h; ++i) {
        float* __restrict o = out + static_cast<int64_t>(i) * w;
        std::fill(o, o + w, 0.0f);
        for (int k = std::max(0, r - i); k < size && i + k - r < h; ++k) {
            const float t = taps[k];
            const float* __restrict src = in + static_cast<int64_t>(i + k - r) * w;
            for (int j = 0; j < w; ++j) o[j] += t * src[j];
        }
    }
}

// out[:, j] = Σ_k taps[k] · in[:, j + k − r] along each row of one image [h, w].
void row_pass(const float* __restrict in, float* __restrict out, int h, int w, const float* taps, int size) {
    const int r = size / 2;
    for (int i = 0; i < h; ++i) {
        const float* __restrict src = in + static_cast<int64_t>(i) * w;
        float* __restrict o = out + static_cast<int64_t>(i) * w;
        std::fill(o, o + w, 0.0f);
        for (int k = 0; k < size; ++k) {
            const float t = taps[k];
            const int shift = k - r;  // o[j] takes src[j + shift] where 0 <= j + shift < w
            const int j0 = std::max(0, -shift), j1 = std::min(w, w - shift);
            for (int j = j0; j < j1; ++j) o[j] += t * src[j + shift];
        }
    }
}

}  // namespace

extern "C" {

// images [n, h, w] → out [n, h, w]: the column pass then the row pass with taps [size] (size odd), or, with
// adjoint set, the row pass then the column pass with the taps reversed (the gradient of the former).
void instag_blur_separable(const float* images, int64_t n, int h, int w, const float* taps, int size, int adjoint,
                           float* out, int threads) {
    std::vector<float> used(taps, taps + size);
    if (adjoint) std::reverse(used.begin(), used.end());
#pragma omp parallel num_threads(threads)
    {
        std::vector<float> scratch(static_cast<size_t>(h) * w);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < n; ++c) {
            const float* in = images + c * h * w;
            float* o = out + c * h * w;
            if (adjoint) {
                row_pass(in, scratch.data(), h, w, used.data(), size);
                column_pass(scratch.data(), o, h, w, used.data(), size);
            } else {
                column_pass(in, scratch.data(), h, w, used.data(), size);
                row_pass(scratch.data(), o, h, w, used.data(), size);
            }
        }
    }
}

}  // extern "C"
