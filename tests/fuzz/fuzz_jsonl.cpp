// libFuzzer target: a JSONL data file read as each data kind a recipe can name (sft messages or
// prompt/completion, preference pairs, unpaired feedback, RL prompts), with the real Qwen3
// tokenizer, with and without skip_bad_records. Any bytes are tokenized or a UserError; never a
// crash or a hang.
// POSTTRAIN_TOKENIZER_DIR names the folder holding the Qwen3 tokenizer.json.
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "datasets/sft_data.h"
#include "models/tokenizer.h"
#include "tests/fuzz/fuzz_input_file.h"

namespace {
const posttrain::Tokenizer* qwen3 = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("POSTTRAIN_TOKENIZER_DIR");
  qwen3 = new posttrain::Tokenizer(posttrain::Tokenizer::from_dir(dir ? dir : "."));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  posttrain::DataSpec spec;
  spec.train = fuzz::write_input(data, size, ".jsonl");
  spec.max_length = 64;
  for (const bool skip : {false, true}) {
    spec.skip_bad_records = skip;
    try {
      posttrain::tokenize_sft_jsonl(spec, *qwen3);
    } catch (const posttrain::UserError&) {
    }
    try {
      posttrain::tokenize_preference_jsonl(spec, *qwen3);
    } catch (const posttrain::UserError&) {
    }
    try {
      posttrain::tokenize_unpaired_jsonl(spec, *qwen3);
    } catch (const posttrain::UserError&) {
    }
    try {
      posttrain::read_prompt_jsonl(spec, *qwen3);
    } catch (const posttrain::UserError&) {
    }
  }
  return 0;
}
