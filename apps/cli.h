// Shared plumbing for subcommands: flag parsing with --help, id lists, device/dtype flags.
#pragma once

#include <yaml-cpp/yaml.h>
#include <boost/program_options.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace posttrain::cli {

namespace po = boost::program_options;

// Parses `args` (after the subcommand name) into `vm`. Returns false after printing help when
// --help was given. Unknown flags and bad values throw UserError naming the flag.
bool parse(const std::string& command, const std::string& usage, po::options_description& options,
           const std::vector<std::string>& args, po::variables_map& vm,
           const po::positional_options_description* positional = nullptr);

// "1,2,3" -> {1, 2, 3}; UserError naming `flag` on anything else.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag);

// key=value settings (`flag` repeated) as a YAML map; values are parsed as YAML scalars or lists,
// and the values of keys that name files (data, reference, reward_model) become absolute paths,
// since paths on the command line are relative to the working directory.
YAML::Node parse_option_settings(const std::vector<std::string>& settings, const std::string& flag);

// The default tokenizer folder (set at build time; POSTTRAIN_TOKENIZER_DIR overrides).
std::string default_tokenizer_dir();

// Subcommands: each returns the process exit code.
int init_base(const std::vector<std::string>& args);
int logprobs(const std::vector<std::string>& args);
int merge(const std::vector<std::string>& args);
int generate(const std::vector<std::string>& args);
int tokenize(const std::vector<std::string>& args);
int run(const std::vector<std::string>& args);
int launch(const std::vector<std::string>& args);
int methods(const std::vector<std::string>& args);
int prepare_data(const std::vector<std::string>& args);
int score(const std::vector<std::string>& args);
int eval(const std::vector<std::string>& args);
int variants(const std::vector<std::string>& args);
int report(const std::vector<std::string>& args);
int testbed(const std::vector<std::string>& args);
int redteam(const std::vector<std::string>& args);
int theory(const std::vector<std::string>& args);
int hackathon(const std::vector<std::string>& args);

}  // namespace posttrain::cli
