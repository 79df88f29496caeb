// libFuzzer target: a recipe file (YAML) through parsing and validation, as `posttrain run` reads
// it. Any bytes are a valid recipe or a UserError; never a crash, a yaml-cpp exception escaping,
// or a hang. The first line, when it starts with '#=', is a key=value override as on the command line.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/recipe.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  if (text.rfind("#=", 0) == 0) overrides.push_back(text.substr(2, text.find('\n') - 2));
  try {
    const posttrain::Recipe recipe = posttrain::parse_recipe(fuzz::write_input(data, size, ".yaml"), overrides, 2);
    // Accepted: the resolved form is itself a recipe (it is what a run writes and reruns).
    posttrain::resolved_recipe_yaml(recipe);
  } catch (const posttrain::UserError&) {
  }
  return 0;
}
