// libFuzzer target: a variant matrix (YAML) through parse_matrix, as `posttrain variants` reads it.
// Any bytes are a matrix or a UserError; never a crash or a hang. Plugins are not loaded.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/variants.h"
#include "tests/fuzz/fuzz_input_file.h"

namespace {

std::string kind_of(const std::string& method) {  // the in-tree methods' data kinds
  if (method == "sft" || method == "constitutional") return "sft";
  if (method == "dpo" || method == "reward") return "preference";
  if (method == "kto") return "unpaired";
  if (method == "grpo" || method == "ppo") return "prompts";
  return "";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    posttrain::parse_matrix(
        fuzz::write_input(data, size, ".yaml"), [](const std::vector<std::string>&) {}, kind_of);
  } catch (const posttrain::UserError&) {
  }
  return 0;
}
