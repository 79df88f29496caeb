// posttrain score: a reward model's score of each prompt/response in a JSONL file, one JSON line per
// record: {"line": N, "score": r} for {"prompt", "response"} records and {"line": N, "chosen": r_c,
// "rejected": r_r, "margin": r_c - r_r} for preference pairs. Prompts and responses are tokenized as
// in training (prompt, then response + <|im_end|>), and the score is read at that last token.
// With --reward NAME instead of --model, a registered reward function (gold, suite, exact_match...)
// scores each {"response", ...prompt record fields} line as RL would: {"line": N, "reward": r}.
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "core/error.h"
#include "datasets/sft_data.h"
#include "models/checkpoint.h"
#include "models/tokenizer.h"
#include "trainers/rewards.h"

namespace posttrain::cli {

namespace {

struct PendingRecord {
  int64_t line;
  std::vector<std::string> fields;  // "score", or "chosen" + "rejected"
  std::vector<std::vector<int32_t>> sequences;
};

// Scores a batch of records and prints one line per record, in input order.
void score_and_print(QwenForCausalLMImpl& model, const std::vector<PendingRecord>& records, int32_t pad_id) {
  std::vector<const std::vector<int32_t>*> rows;
  for (const auto& r : records)
    for (const auto& s : r.sequences) rows.push_back(&s);
  if (rows.empty()) return;
  size_t longest = 0;
  for (const auto* s : rows) longest = std::max(longest, s->size());
  const int64_t B = static_cast<int64_t>(rows.size()), T = static_cast<int64_t>(longest);
  auto ids = torch::full({B, T}, pad_id, torch::kInt64);
  auto real = torch::zeros({B, T}, torch::kBool);
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = *rows[static_cast<size_t>(b)];
    for (size_t t = 0; t < s.size(); ++t) ids[b][static_cast<int64_t>(t)] = s[t];
    real[b].narrow(0, 0, static_cast<int64_t>(s.size())).fill_(true);
  }
  torch::NoGradGuard no_grad;
  auto scores = last_token_scores(model, ids, real).select(1, 0).to(torch::kCPU, torch::kFloat64).contiguous();
  const double* value = scores.data_ptr<double>();
  for (const auto& r : records) {
    nlohmann::ordered_json out;
    out["line"] = r.line;
    for (const auto& field : r.fields) out[field] = *value++;
    if (r.fields.size() == 2) out["margin"] = out["chosen"].get<double>() - out["rejected"].get<double>();
    std::cout << out.dump() << "\n";
  }
}

// Calls `each(record, where, line_number)` for every non-blank line of `input` ("-": stdin); a line
// that is not a JSON object is a UserError naming file:line.
void for_each_input_record(const std::string& input,
                           const std::function<void(const nlohmann::json&, const std::string&, int64_t)>& each) {
  std::ifstream file;
  if (input != "-") {
    if (std::filesystem::is_directory(input)) throw UserError(input + ": is a folder, not a JSONL file");
    file.open(input, std::ios::binary);
    if (!file) throw UserError(input + ": input file not found");
  }
  std::istream& in = input == "-" ? std::cin : file;
  const std::string name = input == "-" ? "stdin" : input;
  std::string line;
  for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = name + ":" + std::to_string(line_number);
    const nlohmann::json record = parse_json_record(line, where);
    if (!record.is_object()) throw UserError(where + ": expected a JSON object");
    each(record, where, line_number);
  }
}

// --reward: the prompt record is the line's "record" object when it has one, else the line without
// its "response".
int score_with_reward(const std::string& name, const std::vector<std::string>& settings, const std::string& input) {
  if (reward_function_description(name).empty()) {
    std::string known;
    for (const auto& n : reward_function_names()) known += (known.empty() ? "" : ", ") + n;
    throw UserError("--reward " + name + ": unknown reward function (registered: " + known + ")");
  }
  YAML::Node entry = parse_option_settings(settings, "--option");
  entry["name"] = name;
  YAML::Node list(YAML::NodeType::Sequence);
  list.push_back(entry);
  RewardMix reward(list, "--reward", "command line", {}, RewardSetup{});
  // One line at a time, so a bad record is reported with its line and nothing after it is printed.
  for_each_input_record(input, [&](const nlohmann::json& line, const std::string& where, int64_t line_number) {
    if (!line.contains("response") || !line["response"].is_string())
      throw UserError(where + ": expected a string \"response\" beside the prompt record's fields");
    nlohmann::json record = line.contains("record") && line["record"].is_object() ? line["record"] : line;
    record.erase("response");
    Rollout r;
    r.record = record.dump();
    r.response_text = line["response"].get<std::string>();
    r.stopped = true;
    double value = 0;
    try {
      value = reward.score({r}, nullptr).at(0);
    } catch (const UserError& e) {
      throw UserError(where + ": " + e.what());
    }
    std::cout << nlohmann::ordered_json{{"line", line_number}, {"reward", value}}.dump() << std::endl;
  });
  return 0;
}

}  // namespace

int score(const std::vector<std::string>& args) {
  po::options_description options("score options");
  std::string model_dir, reward_name, input, device, dtype;
  std::vector<std::string> settings;
  int64_t batch = 8, max_length = 2048;
  options.add_options()("model", po::value(&model_dir), "reward model folder (written by method: reward)")(
      "reward", po::value(&reward_name), "a registered reward function instead of a model, e.g. gold")(
      "option", po::value(&settings)->composing(), "reward function option key=value (with --reward; repeatable)")(
      "input", po::value(&input)->default_value("-"),
      "JSONL with {prompt, response} or {prompt, chosen, rejected} per line; - reads stdin")(
      "batch", po::value(&batch)->default_value(8), "records scored per forward pass")(
      "max-length", po::value(&max_length)->default_value(2048), "longest prompt + response in tokens")(
      "device", po::value(&device)->default_value("cpu"), "cpu or cuda")(
      "dtype", po::value(&dtype)->default_value("float32"), "compute dtype: float32, bfloat16, float16");
  po::variables_map vm;
  if (!parse("score", "(--model DIR | --reward NAME) [--input FILE.jsonl]", options, args, vm)) return 0;
  if (batch <= 0) throw UserError("--batch must be positive");
  if (model_dir.empty() == reward_name.empty()) throw UserError("give exactly one of --model DIR and --reward NAME");
  if (!reward_name.empty()) return score_with_reward(reward_name, settings, input);
  if (!settings.empty()) throw UserError("--option goes with --reward");

  auto model = load_model(model_dir, {parse_dtype(dtype, "--dtype"), parse_device(device)});
  if (!model->is_classifier() || model->config.num_labels != 1)
    throw UserError(model_dir + ": not a reward model (config.json architectures is " + model->config.architecture() +
                    "; train one with method: reward)");
  const Tokenizer tokenizer = Tokenizer::from_dir(model_dir);
  std::vector<PendingRecord> pending;
  for_each_input_record(input, [&](const nlohmann::json& record, const std::string& where, int64_t line_number) {
    if (!record.is_object() || !record.contains("prompt"))
      throw UserError(where + ": expected {\"prompt\", \"response\"} or {\"prompt\", \"chosen\", \"rejected\"}");
    PendingRecord pending_record{line_number, {}, {}};
    const nlohmann::ordered_json prompt = record["prompt"];
    const bool pair = record.contains("chosen") || record.contains("rejected");
    const std::vector<std::string> fields =
        pair ? std::vector<std::string>{"chosen", "rejected"} : std::vector<std::string>{"response"};
    for (const auto& field : fields) {
      if (!record.contains(field)) throw UserError(where + ": missing \"" + field + "\"");
      auto ids = encode_prompt_response(prompt, record[field], nullptr, nlohmann::ordered_json::object(), tokenizer,
                                        where, field)
                     .ids;
      if (static_cast<int64_t>(ids.size()) > max_length)
        throw UserError(where + ": prompt + " + field + " is " + std::to_string(ids.size()) +
                        " tokens, over --max-length " + std::to_string(max_length));
      pending_record.fields.push_back(pair ? field : "score");
      pending_record.sequences.push_back(std::move(ids));
    }
    pending.push_back(std::move(pending_record));
    if (static_cast<int64_t>(pending.size()) == batch) {
      score_and_print(*model, pending, tokenizer.pad_id());
      pending.clear();
    }
  });
  score_and_print(*model, pending, tokenizer.pad_id());
  return 0;
}

}  // namespace posttrain::cli
