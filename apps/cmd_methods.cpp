// posttrain methods: the registered training methods (in-tree, plus those of plugins named with --plugin).
#include <iostream>

#include "apps/cli.h"
#include "trainers/plugin.h"
#include "trainers/preference_losses.h"
#include "trainers/run.h"

namespace posttrain::cli {

int methods(const std::vector<std::string>& args) {
  po::options_description options("methods options");
  std::vector<std::string> plugins;
  options.add_options()("plugin", po::value(&plugins)->composing(), "also load this plugin library (repeatable)");
  po::variables_map vm;
  if (!parse("methods", "[--plugin LIB.so ...]", options, args, vm)) return 0;
  load_plugins(plugins);
  std::cout << "trainers (recipe key `method:`):\n";
  for (const auto& name : trainer_names())
    std::cout << "  " << name << std::string(name.size() < 22 ? 22 - name.size() : 1, ' ') << trainer_description(name)
              << "\n";
  std::cout << "preference losses (dpo.loss):\n";
  for (const auto& name : preference_loss_names())
    std::cout << "  " << name << std::string(name.size() < 22 ? 22 - name.size() : 1, ' ')
              << find_preference_loss(name)->description << "\n";
  return 0;
}

}  // namespace posttrain::cli
