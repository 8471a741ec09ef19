// EWA projection of 3D Gaussians on the CPU, forward only: what a render that needs no gradients runs in place
// of the torch projection (instag/kernels/rasterize_ref.py `project_gaussians`), whose dozen small tensor ops
// per call cost more than the arithmetic. One pass per Gaussian, in the same order of operations as the torch
// code, so the two agree to float rounding (tests/kernels/test_rasterize.py).

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr float kFovClamp = 1.3f;  // rasterize_ref.FOV_CLAMP

}  // namespace

extern "C" {

// means [N, 3], quats [N, 4] (w, x, y, z; normalised here), scales [N, 3]; viewmat [4, 4] world -> camera
// (row-major, OpenCV axes); K [3, 3]. Writes means2d [N, 2], conics [N, 3], depths [N] (camera z) and radii [N]
// (0: culled: behind near_plane, 3-sigma box off the image, or a degenerate 2D covariance).
void instag_project_forward(const float* means, const float* quats, const float* scales, int64_t n,
                            const float* viewmat, const float* K, int width, int height, float near_plane,
                            float eps2d, float* means2d, float* conics, float* depths, int32_t* radii,
                            int threads) {
    const float fx = K[0], fy = K[4], cx = K[2], cy = K[5];
    const float tan_fovx = 0.5f * width / fx, tan_fovy = 0.5f * height / fy;
    const float extra = kFovClamp - 1.0f;
    const float lim_x0 = -(cx / fx + extra * tan_fovx), lim_x1 = (width - cx) / fx + extra * tan_fovx;
    const float lim_y0 = -(cy / fy + extra * tan_fovy), lim_y1 = (height - cy) / fy + extra * tan_fovy;
    const float* R = viewmat;  // rows 0..2, columns 0..2; translation in column 3
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float* m = means + 3 * i;
        const float x = m[0] * R[0] + m[1] * R[1] + m[2] * R[2] + R[3];
        const float y = m[0] * R[4] + m[1] * R[5] + m[2] * R[6] + R[7];
        const float z_cam = m[0] * R[8] + m[1] * R[9] + m[2] * R[10] + R[11];
        const bool in_front = z_cam > near_plane;
        // Culled Gaussians still get finite values, as in the torch code.
        const float z = in_front ? z_cam : 1.0f;
        const float tx = z * std::clamp(x / z, lim_x0, lim_x1);
        const float ty = z * std::clamp(y / z, lim_y0, lim_y1);
        const float j00 = fx / z, j02 = -fx * tx / (z * z);
        const float j11 = fy / z, j12 = -fy * ty / (z * z);

        const float* q = quats + 4 * i;
        const float norm = std::max(std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]), 1e-12f);
        const float w = q[0] / norm, a = q[1] / norm, b = q[2] / norm, c = q[3] / norm;
        const float G[9] = {
            1 - 2 * (b * b + c * c), 2 * (a * b - w * c), 2 * (a * c + w * b),
            2 * (a * b + w * c), 1 - 2 * (a * a + c * c), 2 * (b * c - w * a),
            2 * (a * c - w * b), 2 * (b * c + w * a), 1 - 2 * (a * a + b * b),
        };
        // Rc = R_cw · G (the Gaussian's axes in camera space), then M = J · Rc · diag(scales).
        float Rc[9];
        for (int r = 0; r < 3; ++r)
            for (int k = 0; k < 3; ++k)
                Rc[3 * r + k] = R[4 * r] * G[k] + R[4 * r + 1] * G[3 + k] + R[4 * r + 2] * G[6 + k];
        const float* s = scales + 3 * i;
        float M0[3], M1[3];
        for (int k = 0; k < 3; ++k) {
            M0[k] = (j00 * Rc[k] + j02 * Rc[6 + k]) * s[k];
            M1[k] = (j11 * Rc[3 + k] + j12 * Rc[6 + k]) * s[k];
        }
        const float cxx = M0[0] * M0[0] + M0[1] * M0[1] + M0[2] * M0[2] + eps2d;
        const float cxy = M0[0] * M1[0] + M0[1] * M1[1] + M0[2] * M1[2];
        const float cyy = M1[0] * M1[0] + M1[1] * M1[1] + M1[2] * M1[2] + eps2d;
        const float det = cxx * cyy - cxy * cxy;
        conics[3 * i] = cyy / det;
        conics[3 * i + 1] = -cxy / det;
        conics[3 * i + 2] = cxx / det;
        const float mx = fx * x / z + cx, my = fy * y / z + cy;
        means2d[2 * i] = mx;
        means2d[2 * i + 1] = my;
        depths[i] = z_cam;

        const float mid = 0.5f * (cxx + cyy);
        const float lam_max = mid + std::sqrt(std::max(mid * mid - det, 0.0f));
        const float radius = std::ceil(3.0f * std::sqrt(lam_max));
        const bool on_screen = (mx + radius > 0) && (mx - radius < width) && (my + radius > 0) && (my - radius < height);
        radii[i] = (in_front && on_screen && det > 0) ? static_cast<int32_t>(radius) : 0;
    }
}

}  // extern "C"
