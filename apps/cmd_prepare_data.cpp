// posttrain prepare-data RECIPE.yaml: tokenize the recipe's data into its HDF5 shard ahead of time
// (posttrain run does the same on first use and reuses the shard afterwards).
#include <iostream>

#include "apps/cli.h"
#include "core/error.h"
#include "core/files.h"
#include "core/recipe.h"
#include "datasets/sft_data.h"
#include "models/tokenizer.h"
#include "trainers/plugin.h"
#include "trainers/run.h"

namespace posttrain::cli {

int prepare_data(const std::vector<std::string>& args) {
  po::options_description options("prepare-data options");
  std::string recipe_path, tokenizer_dir;
  std::vector<std::string> overrides;
  options.add_options()("recipe", po::value(&recipe_path)->required(), "recipe YAML file")(
      "tokenizer", po::value(&tokenizer_dir),
      "folder with tokenizer.json (default: the recipe's base model, or the Qwen3 tokenizer for presets)")(
      "override", po::value(&overrides)->multitoken(), "key.sub=value settings (positional after the recipe)");
  po::positional_options_description positional;
  positional.add("recipe", 1).add("override", -1);
  po::variables_map vm;
  if (!parse("prepare-data", "RECIPE.yaml [key.sub=value ...] [--tokenizer DIR]", options, args, vm, &positional))
    return 0;
  const Recipe recipe = parse_recipe(recipe_path, overrides, 1);
  if (tokenizer_dir.empty()) tokenizer_dir = recipe.base.preset.empty() ? recipe.base.path : default_tokenizer_dir();
  const Tokenizer tokenizer = Tokenizer::from_dir(tokenizer_dir);
  load_plugins(recipe.plugins);
  const std::string kind = trainer_data_kind(recipe.method);
  if (kind.empty()) throw UserError(recipe_path + ": method \"" + recipe.method + "\" is not registered");
  if (kind == "prompts") {  // RL prompts are read directly at the start of a run; nothing to cache
    const auto prompts = read_prompt_jsonl(recipe.data, tokenizer);
    std::cout << recipe.data.train << ": " << prompts.size() << " prompts (read directly by the run)\n";
    return 0;
  }
  std::string shard;
  const auto data = prepare_sft_data(recipe.data, tokenizer, sha256_file(tokenizer_dir + "/tokenizer.json"),
                                     cache_root() + "/data", nullptr, &shard, kind);
  std::cout << shard << "\n";
  return data.size() > 0 ? 0 : 2;
}

}  // namespace posttrain::cli
