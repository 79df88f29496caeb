#include "models/matvec.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// This file is compiled with -fopenmp (CMakeLists.txt): at::parallel_for is a header template whose
// OpenMP pragma only splits work across threads in a translation unit built with OpenMP.

namespace posttrain {

namespace {

#if defined(__x86_64__)
bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

__attribute__((target("avx2,fma"))) float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  sum = _mm_hadd_ps(sum, sum);
  return _mm_cvtss_f32(_mm_hadd_ps(sum, sum));
}

// y[r] = weight[r, :] . x for r in [begin, end). One weight row at a time, read front to back: a
// single forward stream, which the hardware prefetcher follows at full bandwidth (OpenBLAS's sgemv
// interleaves several rows and reaches ~70% of it here). Four accumulators so FMA latency never
// holds up the loads.
__attribute__((target("avx2,fma"))) void dot_rows_avx2(const float* weight, const float* x, float* y, int64_t begin,
                                                       int64_t end, int64_t in) {
  for (int64_t r = begin; r < end; ++r) {
    const float* w = weight + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    for (; k + 32 <= in; k += 32) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    for (; k + 8 <= in; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
    float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < in; ++k) sum += w[k] * x[k];
    y[r] = sum;
  }
}
#endif

}  // namespace

at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t in = weight.size(1), out = weight.size(0);
  // Only float32 on the CPU, outside autograd: CUDA's gemm handles M = 1 well, other dtypes have
  // no fast path here, and a gradient would need this written as an autograd function.
  const bool one_row = x.numel() == in && x.is_cpu() && x.scalar_type() == at::kFloat &&
                       weight.scalar_type() == at::kFloat && weight.is_contiguous() &&
                       !(at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()));
  if (!one_row) return torch::linear(x, weight, bias);
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  auto row = x.reshape({in}).contiguous();  // [in]
  at::Tensor y;  // [out]
#if defined(__x86_64__)
  if (cpu_has_avx2_fma()) {
    y = torch::empty({out}, x.options());
    const float* w = weight.data_ptr<float>();
    const float* xp = row.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    // ~64K weights per task: the k_proj of a small model stays on one thread, an LM head splits.
    at::parallel_for(0, out, std::max<int64_t>(1, (int64_t{1} << 16) / in),
                     [&](int64_t begin, int64_t end) { dot_rows_avx2(w, xp, yp, begin, end, in); });
    if (bias.defined()) y.add_(bias);
  }
#endif
  if (!y.defined()) y = bias.defined() ? at::addmv(bias, weight, row) : at::mv(weight, row);
  return y.view(sizes);  // [..., out]
}

}  // namespace posttrain
