// libFuzzer target: the safetensors header parser must accept or reject any bytes with a UserError,
// never crash, hang or read out of bounds (run under ASan by scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "models/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto header = posttrain::parse_safetensors_header(data, size, "fuzz.safetensors");
    // Accepted: every range must lie inside the buffer.
    for (const auto& t : header.tensors)
      if (header.data_start + t.end > size) __builtin_trap();
  } catch (const posttrain::UserError&) {
  }
  return 0;
}
