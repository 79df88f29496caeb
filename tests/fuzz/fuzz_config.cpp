// libFuzzer target: config.json of a HF model folder. Any bytes are a Qwen config within the
// plausible bounds or a UserError; never a crash, and never a config that would allocate absurdly.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "models/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto c = posttrain::parse_qwen_config(std::string(reinterpret_cast<const char*>(data), size), "config.json");
    if (c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.vocab_size <= 0 || c.hidden_size > (1 << 16) ||
        c.num_attention_heads % c.num_key_value_heads != 0)
      __builtin_trap();
  } catch (const posttrain::UserError&) {
  }
  return 0;
}
