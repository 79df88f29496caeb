// posttrain run RECIPE.yaml [key.sub=value ...]: one training run, in this process.
#include <iostream>

#include "apps/cli.h"
#include "trainers/run.h"

namespace posttrain::cli {

int run(const std::vector<std::string>& args) {
  po::options_description options("run options");
  std::string recipe;
  std::vector<std::string> overrides;
  options.add_options()("recipe", po::value(&recipe)->required(), "recipe YAML file")(
      "override", po::value(&overrides)->multitoken(),
      "key.sub=value settings that replace the recipe's (positional after the recipe)");
  po::positional_options_description positional;
  positional.add("recipe", 1).add("override", -1);
  po::variables_map vm;
  if (!parse("run", "RECIPE.yaml [key.sub=value ...]", options, args, vm, &positional)) return 0;
  std::string command_line = "posttrain run";
  for (const auto& a : args) command_line += " " + a;
  RunOptions run_options{overrides, default_tokenizer_dir(), command_line};
  run_recipe(recipe, run_options);
  return 0;
}

}  // namespace posttrain::cli
