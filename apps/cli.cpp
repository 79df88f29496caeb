#include "apps/cli.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "core/error.h"

namespace posttrain::cli {

bool parse(const std::string& command, const std::string& usage, po::options_description& options,
           const std::vector<std::string>& args, po::variables_map& vm,
           const po::positional_options_description* positional) {
  options.add_options()("help,h", "show this help and exit");
  try {
    po::command_line_parser parser(args);
    parser.options(options);
    if (positional != nullptr) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: posttrain " << command << " " << usage << "\n\n" << options << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UserError("posttrain " + command + ": " + e.what() + " (see posttrain " + command + " --help)");
  }
  return true;
}

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || value < 0 || value > 0x7fffffff)
      throw UserError(flag + ": \"" + item +
                      "\" is not a token id (expected comma-separated non-negative integers, e.g. 1,2,3)");
    ids.push_back(static_cast<int32_t>(value));
    start = comma + 1;
  }
  return ids;
}

std::string default_tokenizer_dir() {
  if (const char* env = std::getenv("POSTTRAIN_TOKENIZER_DIR")) return env;
  return POSTTRAIN_TOKENIZER_DIR;
}

YAML::Node parse_option_settings(const std::vector<std::string>& settings, const std::string& flag) {
  YAML::Node options(YAML::NodeType::Map);
  for (const auto& s : settings) {
    const size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0) throw UserError(flag + " " + s + ": expected key=value");
    const std::string key = s.substr(0, eq), value = s.substr(eq + 1);
    YAML::Node parsed;
    try {
      parsed = YAML::Load(value);
    } catch (const YAML::Exception&) {
      parsed = YAML::Node(value);
    }
    const bool names_file = key == "data" || key == "reference" || key == "reward_model";
    options[key] = names_file ? YAML::Node(std::filesystem::absolute(value).lexically_normal().string()) : parsed;
  }
  return options;
}

}  // namespace posttrain::cli
