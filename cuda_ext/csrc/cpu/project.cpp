// EWA projection of 3D Gaussians on the CPU, forward and backward: what the C++ rasterizer runs in place of the
// torch projection (instag/kernels/rasterize_ref.py `project_gaussians`), whose dozen small tensor ops per call
// (and three dozen in its backward) cost more than the arithmetic. One pass per Gaussian, in the same order of
// operations as the torch code, so the two agree to float rounding (tests/kernels/test_rasterize.py).

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr float kFovClamp = 1.3f;  // rasterize_ref.FOV_CLAMP

// The camera's constants every Gaussian shares.
struct Camera {
    float fx, fy, cx, cy, lim_x0, lim_x1, lim_y0, lim_y1;
    const float* R;  // viewmat, row-major [4, 4]: rotation in columns 0..2, translation in column 3

    Camera(const float* viewmat, const float* K, int width, int height) : R(viewmat) {
        fx = K[0], fy = K[4], cx = K[2], cy = K[5];
        const float tan_fovx = 0.5f * width / fx, tan_fovy = 0.5f * height / fy;
        const float extra = kFovClamp - 1.0f;
        lim_x0 = -(cx / fx + extra * tan_fovx), lim_x1 = (width - cx) / fx + extra * tan_fovx;
        lim_y0 = -(cy / fy + extra * tan_fovy), lim_y1 = (height - cy) / fy + extra * tan_fovy;
    }
};

// Rotation matrix G [3, 3] (row-major) of the unit quaternion (w, a, b, c).
inline void rotmat(float w, float a, float b, float c, float* G) {
    G[0] = 1 - 2 * (b * b + c * c), G[1] = 2 * (a * b - w * c), G[2] = 2 * (a * c + w * b);
    G[3] = 2 * (a * b + w * c), G[4] = 1 - 2 * (a * a + c * c), G[5] = 2 * (b * c - w * a);
    G[6] = 2 * (a * c - w * b), G[7] = 2 * (b * c + w * a), G[8] = 1 - 2 * (a * a + b * b);
}

// One Gaussian's projection, every intermediate the backward pass needs: camera-space centre, the Jacobian at
// its clamped x/z and y/z, the rotation in camera axes and M = J · Rc · diag(scales), whose rows give the 2D
// covariance.
struct Projected {
    float x, y, z_cam, z;  // z: z_cam, or 1 for a Gaussian behind the near plane (finite values, as in torch)
    bool in_front, inside_x, inside_y;  // inside: x/z (y/z) within the field of view's clamp
    float cux, cuy, tx, ty, j00, j02, j11, j12;
    float raw_norm, norm, w, a, b, c;  // the quaternion's norm, floored, and the unit quaternion
    float Rc[9], A0[3], A1[3], M0[3], M1[3];  // A = J · Rc, M = A · diag(scales)
    float cxx, cxy, cyy, det;

    Projected(const Camera& cam, const float* m, const float* q, const float* s, float near_plane, float eps2d) {
        const float* R = cam.R;
        x = m[0] * R[0] + m[1] * R[1] + m[2] * R[2] + R[3];
        y = m[0] * R[4] + m[1] * R[5] + m[2] * R[6] + R[7];
        z_cam = m[0] * R[8] + m[1] * R[9] + m[2] * R[10] + R[11];
        in_front = z_cam > near_plane;
        z = in_front ? z_cam : 1.0f;
        const float ux = x / z, uy = y / z;
        inside_x = ux >= cam.lim_x0 && ux <= cam.lim_x1;
        inside_y = uy >= cam.lim_y0 && uy <= cam.lim_y1;
        cux = std::clamp(ux, cam.lim_x0, cam.lim_x1);
        cuy = std::clamp(uy, cam.lim_y0, cam.lim_y1);
        tx = z * cux, ty = z * cuy;
        j00 = cam.fx / z, j02 = -cam.fx * tx / (z * z);
        j11 = cam.fy / z, j12 = -cam.fy * ty / (z * z);

        raw_norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
        norm = std::max(raw_norm, 1e-12f);
        w = q[0] / norm, a = q[1] / norm, b = q[2] / norm, c = q[3] / norm;
        float G[9];
        rotmat(w, a, b, c, G);
        // Rc = R_cw · G (the Gaussian's axes in camera space).
        for (int r = 0; r < 3; ++r)
            for (int k = 0; k < 3; ++k)
                Rc[3 * r + k] = R[4 * r] * G[k] + R[4 * r + 1] * G[3 + k] + R[4 * r + 2] * G[6 + k];
        for (int k = 0; k < 3; ++k) {
            A0[k] = j00 * Rc[k] + j02 * Rc[6 + k];
            A1[k] = j11 * Rc[3 + k] + j12 * Rc[6 + k];
            M0[k] = A0[k] * s[k];
            M1[k] = A1[k] * s[k];
        }
        cxx = M0[0] * M0[0] + M0[1] * M0[1] + M0[2] * M0[2] + eps2d;
        cxy = M0[0] * M1[0] + M0[1] * M1[1] + M0[2] * M1[2];
        cyy = M1[0] * M1[0] + M1[1] * M1[1] + M1[2] * M1[2] + eps2d;
        det = cxx * cyy - cxy * cxy;
    }
};

}  // namespace

extern "C" {

// means [N, 3], quats [N, 4] (w, x, y, z; normalised here), scales [N, 3]; viewmat [4, 4] world -> camera
// (row-major, OpenCV axes); K [3, 3]. Writes means2d [N, 2], conics [N, 3], depths [N] (camera z) and radii [N]
// (0: culled: behind near_plane, 3-sigma box off the image, or a degenerate 2D covariance).
void instag_project_forward(const float* means, const float* quats, const float* scales, int64_t n,
                            const float* viewmat, const float* K, int width, int height, float near_plane,
                            float eps2d, float* means2d, float* conics, float* depths, int32_t* radii,
                            int threads) {
    const Camera cam(viewmat, K, width, height);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const Projected p(cam, means + 3 * i, quats + 4 * i, scales + 3 * i, near_plane, eps2d);
        const float cxx = p.cxx, cxy = p.cxy, cyy = p.cyy, det = p.det;
        conics[3 * i] = cyy / det;
        conics[3 * i + 1] = -cxy / det;
        conics[3 * i + 2] = cxx / det;
        const float mx = cam.fx * p.x / p.z + cam.cx, my = cam.fy * p.y / p.z + cam.cy;
        means2d[2 * i] = mx;
        means2d[2 * i + 1] = my;
        depths[i] = p.z_cam;

        const float mid = 0.5f * (cxx + cyy);
        const float lam_max = mid + std::sqrt(std::max(mid * mid - det, 0.0f));
        const float radius = std::ceil(3.0f * std::sqrt(lam_max));
        const bool on_screen = (mx + radius > 0) && (mx - radius < width) && (my + radius > 0) && (my - radius < height);
        radii[i] = (p.in_front && on_screen && det > 0) ? static_cast<int32_t>(radius) : 0;
    }
}

// The gradients of instag_project_forward's means2d, conics and depths (grad_means2d [N, 2], grad_conics [N, 3],
// grad_depths [N]) with respect to means [N, 3], quats [N, 4] (before normalising) and scales [N, 3], as torch's
// autograd takes them through `project_gaussians`: culled Gaussians too, the clamped Jacobian's x/z and y/z
// constant outside the field of view. The forward's quantities are recomputed, not stored.
void instag_project_backward(const float* means, const float* quats, const float* scales, int64_t n,
                             const float* viewmat, const float* K, int width, int height, float near_plane,
                             float eps2d, const float* grad_means2d, const float* grad_conics,
                             const float* grad_depths, float* grad_means, float* grad_quats, float* grad_scales,
                             int threads) {
    const Camera cam(viewmat, K, width, height);
    const float* R = cam.R;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float* s = scales + 3 * i;
        const Projected p(cam, means + 3 * i, quats + 4 * i, s, near_plane, eps2d);
        const float x = p.x, y = p.y, z = p.z, tx = p.tx, ty = p.ty, j00 = p.j00, j02 = p.j02, j11 = p.j11,
                    j12 = p.j12, w = p.w, a = p.a, b = p.b, c = p.c, norm = p.norm;
        const float cxx = p.cxx, cxy = p.cxy, cyy = p.cyy, det = p.det;
        const float *Rc = p.Rc, *A0 = p.A0, *A1 = p.A1, *M0 = p.M0, *M1 = p.M1;

        // conics (cyy, -cxy, cxx) / det → the 2D covariance's three terms.
        const float ga = grad_conics[3 * i], gb = grad_conics[3 * i + 1], gc = grad_conics[3 * i + 2];
        const float inv = 1.0f / det, inv2 = inv * inv;
        const float g_det = -(ga * cyy - gb * cxy + gc * cxx) * inv2;
        const float g_cxx = gc * inv + g_det * cyy;
        const float g_cyy = ga * inv + g_det * cxx;
        const float g_cxy = -gb * inv - 2.0f * g_det * cxy;

        // cov = M Mᵀ → M, then scales, A → J and Rc.
        float gRc[9];
        float g_j00 = 0, g_j02 = 0, g_j11 = 0, g_j12 = 0;
        float* gs = grad_scales + 3 * i;
        for (int k = 0; k < 3; ++k) {
            const float gM0 = 2.0f * g_cxx * M0[k] + g_cxy * M1[k];
            const float gM1 = 2.0f * g_cyy * M1[k] + g_cxy * M0[k];
            gs[k] = gM0 * A0[k] + gM1 * A1[k];
            const float gA0 = gM0 * s[k], gA1 = gM1 * s[k];
            g_j00 += gA0 * Rc[k];
            g_j02 += gA0 * Rc[6 + k];
            g_j11 += gA1 * Rc[3 + k];
            g_j12 += gA1 * Rc[6 + k];
            gRc[k] = gA0 * j00;
            gRc[3 + k] = gA1 * j11;
            gRc[6 + k] = gA0 * j02 + gA1 * j12;
        }
        // Rc = R · G → G, then the unit quaternion, then the raw one.
        float gG[9];
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 3; ++k)
                gG[3 * j + k] = R[j] * gRc[k] + R[4 + j] * gRc[3 + k] + R[8 + j] * gRc[6 + k];
        const float gw = 2.0f * (-c * gG[1] + b * gG[2] + c * gG[3] - a * gG[5] - b * gG[6] + a * gG[7]);
        const float ga_ = 2.0f * (b * gG[1] + c * gG[2] + b * gG[3] - 2.0f * a * gG[4] - w * gG[5] + c * gG[6]
                                  + w * gG[7] - 2.0f * a * gG[8]);
        const float gb_ = 2.0f * (-2.0f * b * gG[0] + a * gG[1] + w * gG[2] + a * gG[3] + c * gG[5] - w * gG[6]
                                  + c * gG[7] - 2.0f * b * gG[8]);
        const float gc_ = 2.0f * (-2.0f * c * gG[0] - w * gG[1] + a * gG[2] + w * gG[3] - 2.0f * c * gG[4]
                                  + b * gG[5] + a * gG[6] + b * gG[7]);
        float* gq = grad_quats + 4 * i;
        if (p.raw_norm > 1e-12f) {
            const float dot = w * gw + a * ga_ + b * gb_ + c * gc_;
            gq[0] = (gw - w * dot) / norm, gq[1] = (ga_ - a * dot) / norm;
            gq[2] = (gb_ - b * dot) / norm, gq[3] = (gc_ - c * dot) / norm;
        } else {  // the norm's floor: a constant divisor
            gq[0] = gw / norm, gq[1] = ga_ / norm, gq[2] = gb_ / norm, gq[3] = gc_ / norm;
        }

        // J (and the means2d) → camera x, y, z; tx = z · clamp(x / z) moves with x inside the field of view and
        // with z alone outside it.
        const float gmx = grad_means2d[2 * i], gmy = grad_means2d[2 * i + 1];
        const float g_tx = -g_j02 * cam.fx / (z * z), g_ty = -g_j12 * cam.fy / (z * z);
        float gx = gmx * cam.fx / z, gy = gmy * cam.fy / z;
        float gz = -g_j00 * cam.fx / (z * z) - g_j11 * cam.fy / (z * z)
                   + 2.0f * g_j02 * cam.fx * tx / (z * z * z) + 2.0f * g_j12 * cam.fy * ty / (z * z * z)
                   - gmx * cam.fx * x / (z * z) - gmy * cam.fy * y / (z * z) + g_tx * p.cux + g_ty * p.cuy;
        if (p.inside_x) gx += g_tx, gz -= g_tx * x / z;
        if (p.inside_y) gy += g_ty, gz -= g_ty * y / z;
        const float g_zcam = (p.in_front ? gz : 0.0f) + grad_depths[i];
        float* gm = grad_means + 3 * i;
        for (int k = 0; k < 3; ++k) gm[k] = R[k] * gx + R[4 + k] * gy + R[8 + k] * g_zcam;
    }
}

}  // extern "C"
