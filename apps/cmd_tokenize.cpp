// posttrain tokenize: JSONL {"text": ...} on stdin -> {"ids": [...]} on stdout; --decode reverses.
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "core/error.h"
#include "datasets/sft_data.h"
#include "models/tokenizer.h"

namespace posttrain::cli {

int tokenize(const std::vector<std::string>& args) {
  po::options_description options("tokenize options");
  std::string model_dir;
  options.add_options()("model", po::value(&model_dir)->required(), "folder with tokenizer.json (a HF model folder)")(
      "decode", po::bool_switch(), "read {\"ids\": [...]} lines and write {\"text\": ...} lines");
  po::variables_map vm;
  if (!parse("tokenize", "--model DIR [--decode] < input.jsonl > output.jsonl", options, args, vm)) return 0;
  const bool decode = vm["decode"].as<bool>();
  const Tokenizer tokenizer = Tokenizer::from_dir(model_dir);

  std::string line;
  for (size_t line_number = 1; std::getline(std::cin, line); ++line_number) {
    const std::string where = "stdin:" + std::to_string(line_number);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines carry no record
    const nlohmann::json record = parse_json_record(line, where);
    nlohmann::json out;
    if (decode) {
      if (!record.is_object() || !record.contains("ids") || !record["ids"].is_array())
        fail(where, "expected {\"ids\": [...]}");
      std::vector<int32_t> ids;
      for (const auto& v : record["ids"]) {
        if (!v.is_number_integer()) fail(where, "\"ids\" must hold integers");
        ids.push_back(v.get<int32_t>());
      }
      try {
        out["text"] = sanitize_utf8(tokenizer.decode(ids));
      } catch (const UserError& e) {
        fail(where, e.what());
      }
    } else {
      if (!record.is_object() || !record.contains("text") || !record["text"].is_string())
        fail(where, "expected {\"text\": \"...\"}");
      try {
        out["ids"] = tokenizer.encode(record["text"].get<std::string>());
      } catch (const UserError& e) {
        fail(where, e.what());
      }
    }
    std::cout << out.dump() << "\n";
  }
  return 0;
}

}  // namespace posttrain::cli
