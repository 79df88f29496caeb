// Mixed precision for CUDA: forwards run under autocast to bfloat16 (matmuls in bf16, softmax /
// norms / log-softmax in fp32) while the parameters stay float32, so gradients and the optimizer see
// fp32 master weights. A scope, not a global switch: autocast caches the bf16 copies of weights, and
// those copies must be dropped before the optimizer changes the weights.
#pragma once

namespace posttrain {

class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool enabled);  // enabled = false: does nothing (fp32 / CPU)
  ~Bf16Autocast();
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  bool enabled_;
  bool was_enabled_ = false;
  int previous_dtype_ = 0;  // c10::ScalarType, kept as int to keep ATen out of this header
};

}  // namespace posttrain
