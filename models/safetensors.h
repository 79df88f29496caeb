// The safetensors container format: strict header parsing and header building (no libtorch here,
// so the parser can be fuzzed on its own). Tensor reading/writing lives in models/weights_io.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace posttrain {

enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* st_dtype_name(StDtype dtype);
size_t st_dtype_size(StDtype dtype);

struct StTensorInfo {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin;  // byte offsets into the data section (after the header), [begin, end)
  uint64_t end;
};

struct StHeader {
  std::vector<StTensorInfo> tensors;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
  uint64_t data_start;  // file offset of the data section: 8 + header length
};

// Parses and validates the header of a safetensors file held in [data, data + size):
// header length within the file, valid JSON object, known dtypes, non-negative shapes whose
// element count x dtype size equals the byte range, ranges in bounds, non-overlapping and covering
// the whole data section. Throws UserError naming `file` and the problem.
StHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& file);

// Builds the 8-byte length prefix + JSON header (space-padded to a multiple of 8, as the reference
// implementation does) for tensors laid out back to back in the given order. Fills begin/end.
std::string build_safetensors_header(std::vector<StTensorInfo>& tensors,
                                     const std::map<std::string, std::string>& metadata);

}  // namespace posttrain
