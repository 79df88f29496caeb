// x W^T (+ b) that takes BLAS's matrix-vector routine when x is a single row on the CPU.
//
// Batch-1 decoding multiplies one row by every weight matrix: the step is a pass over all the
// weights, and its speed is the speed memory can be read. OpenBLAS's sgemm with M = 1 reads the
// weights at about a third of the machine's read bandwidth on the 2-core VM; its sgemv at the full
// bandwidth (bench/bench_decode.cpp measures both). Numbers agree with torch::linear up to float32
// rounding order.
#pragma once

#include <ATen/core/Tensor.h>

namespace posttrain {

// x: [..., in], weight: [out, in], bias: [out] or undefined -> [..., out]
at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});

}  // namespace posttrain
