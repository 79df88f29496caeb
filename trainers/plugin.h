// Out-of-tree plugins: a shared library named in a recipe under `plugins:` (or given to posttrain
// methods / eval with --plugin) that registers trainers, preference losses, advantage estimators,
// reward functions or eval suites (eval_hooks/suite.h register_suite) when loaded.
//
// A plugin is built against the installed posttrain CMake package:
//     find_package(posttrain REQUIRED)
//     posttrain_add_plugin(my_method my_method.cpp)
// and defines its entry point with the macro below:
//     POSTTRAIN_PLUGIN { posttrain::register_trainer("my_method", train_my_method, "what it does"); }
#pragma once

#include <string>
#include <vector>

#define POSTTRAIN_PLUGIN_API_VERSION 1

// Expands to the two C entry points posttrain looks up: the API version the plugin was built
// against, and the registration function (whose body follows the macro).
#define POSTTRAIN_PLUGIN                                                                 \
  extern "C" int posttrain_plugin_api_version() { return POSTTRAIN_PLUGIN_API_VERSION; } \
  extern "C" void posttrain_plugin_register()

namespace posttrain {

// dlopen()s each library (RTLD_NOW | RTLD_GLOBAL), checks its API version and calls its
// registration function. UserError naming the file on any failure.
void load_plugins(const std::vector<std::string>& paths);

}  // namespace posttrain
