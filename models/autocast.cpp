#include "models/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

// libtorch 2.4 replaced the CUDA-specific autocast calls with ones taking a device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define POSTTRAIN_AUTOCAST_BY_DEVICE 1
#endif

namespace posttrain {

namespace {

bool cuda_autocast_enabled() {
#ifdef POSTTRAIN_AUTOCAST_BY_DEVICE
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}

void set_cuda_autocast(bool enabled, at::ScalarType dtype) {
#ifdef POSTTRAIN_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
#else
  at::autocast::set_autocast_gpu_dtype(dtype);
  at::autocast::set_enabled(enabled);
#endif
}

at::ScalarType cuda_autocast_dtype() {
#ifdef POSTTRAIN_AUTOCAST_BY_DEVICE
  return at::autocast::get_autocast_dtype(at::kCUDA);
#else
  return at::autocast::get_autocast_gpu_dtype();
#endif
}

}  // namespace

Bf16Autocast::Bf16Autocast(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
  was_enabled_ = cuda_autocast_enabled();
  previous_dtype_ = static_cast<int>(cuda_autocast_dtype());
  set_cuda_autocast(true, at::kBFloat16);
  at::autocast::increment_nesting();
}

Bf16Autocast::~Bf16Autocast() {
  if (!enabled_) return;
  // Leaving the outermost scope drops the cached bf16 weight copies (the optimizer will change them).
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_cuda_autocast(was_enabled_, static_cast<at::ScalarType>(previous_dtype_));
}

}  // namespace posttrain
