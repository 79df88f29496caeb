// posttrain score: a reward model's score of each prompt/response in a JSONL file, one JSON line per
// record: {"line": N, "score": r} for {"prompt", "response"} records and {"line": N, "chosen": r_c,
// "rejected": r_r, "margin": r_c - r_r} for preference pairs. Prompts and responses are tokenized as
// in training (prompt, then response + <|im_end|>), and the score is read at that last token.
#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "core/error.h"
#include "datasets/sft_data.h"
#include "models/checkpoint.h"
#include "models/tokenizer.h"

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

}  // namespace

int score(const std::vector<std::string>& args) {
  po::options_description options("score options");
  std::string model_dir, input, device, dtype;
  int64_t batch = 8, max_length = 2048;
  options.add_options()("model", po::value(&model_dir)->required(), "reward model folder (written by method: reward)")(
      "input", po::value(&input)->default_value("-"),
      "JSONL with {prompt, response} or {prompt, chosen, rejected} per line; - reads stdin")(
      "batch", po::value(&batch)->default_value(8), "records scored per forward pass")(
      "max-length", po::value(&max_length)->default_value(2048), "longest prompt + response in tokens")(
      "device", po::value(&device)->default_value("cpu"), "cpu or cuda")(
      "dtype", po::value(&dtype)->default_value("float32"), "compute dtype: float32, bfloat16, float16");
  po::variables_map vm;
  if (!parse("score", "--model DIR [--input FILE.jsonl]", options, args, vm)) return 0;
  if (batch <= 0) throw UserError("--batch must be positive");

  auto model = load_model(model_dir, {parse_dtype(dtype, "--dtype"), parse_device(device)});
  if (!model->is_classifier() || model->config.num_labels != 1)
    throw UserError(model_dir + ": not a reward model (config.json architectures is " + model->config.architecture() +
                    "; train one with method: reward)");
  const Tokenizer tokenizer = Tokenizer::from_dir(model_dir);
  std::ifstream file;
  if (input != "-") {
    file.open(input, std::ios::binary);
    if (!file) throw UserError(input + ": input file not found");
  }
  std::istream& in = input == "-" ? std::cin : file;
  const std::string name = input == "-" ? "stdin" : input;

  std::vector<PendingRecord> pending;
  std::string line;
  for (int64_t line_number = 1; std::getline(in, line); ++line_number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = name + ":" + std::to_string(line_number);
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw UserError(where + ": not valid JSON: " + e.what());
    }
    if (!record.is_object() || !record.contains("prompt"))
      throw UserError(where + ": expected {\"prompt\", \"response\"} or {\"prompt\", \"chosen\", \"rejected\"}");
    PendingRecord pending_record{line_number, {}, {}};
    const auto prompt = encode_prompt(record["prompt"], tokenizer, where);
    const bool pair = record.contains("chosen") || record.contains("rejected");
    const std::vector<std::string> fields =
        pair ? std::vector<std::string>{"chosen", "rejected"} : std::vector<std::string>{"response"};
    for (const auto& field : fields) {
      if (!record.contains(field)) throw UserError(where + ": missing \"" + field + "\"");
      auto ids = encode_prompt_response(prompt, response_text(record[field], where, field), tokenizer);
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
  }
  score_and_print(*model, pending, tokenizer.pad_id());
  return 0;
}

}  // namespace posttrain::cli
