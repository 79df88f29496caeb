// FLOP accounting for MFU: model FLOPs per token, and the device's bare-matmul rate to compare with.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>

#include "models/config.h"

namespace posttrain {

// Forward FLOPs per token: 2 x every matmul weight (q, k, v, o, gate, up, down per layer, and the LM
// head) plus attention scores and values, 2 x 2 x heads x head_dim x (seq / 2) per layer (causal:
// on average a token attends to half the sequence). Backward is about 2x forward.
double forward_flops_per_token(const QwenConfig& config, int64_t sequence_length);

// The LM head's (or a classifier's score head's) share of that: 2 x hidden x vocab (or num_labels).
double lm_head_flops_per_token(const QwenConfig& config);

// Best of ten n^3 matmuls of `dtype` on `device`, in FLOP/s (n = 1024 on CPU, 8192 on CUDA, big
// enough to reach the device's dense peak).
double measure_matmul_flops(const c10::Device& device, c10::ScalarType dtype = c10::kFloat);

}  // namespace posttrain
