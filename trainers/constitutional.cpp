// method: constitutional. Constitutional AI (Bai et al., 2022) in its two phases, picked by
// constitutional.phase; both first turn the recipe's prompts (data kind "prompts", e.g. red-team
// requests) into training data with the model itself, then train on it with an existing loop.
//
//   sl (SL-CAI): the base answers each prompt; then, `rounds` times, it critiques its latest answer
//       under a principle drawn from the constitution and revises it. Every generation is recorded
//       (<run>/cai/generations.h5 and .jsonl); the final revisions become chat examples
//       (<run>/cai/sl_data.jsonl) on which the base is fine-tuned by the SFT loop.
//   rl (RL-CAI / RLAIF): the base samples two responses per prompt; a judge (the base, or
//       constitutional.judge: a model folder) compares them under a drawn principle by the
//       log-likelihoods of " (A)" and " (B)", averaged over both orders to cancel its position bias.
//       The soft labels form <run>/cai/preferences.jsonl ({"prompt", "chosen", "rejected",
//       "preference"}), trained by DPO (train_with: dpo, soft-label sigmoid loss) or as a reward model
//       (train_with: reward) for PPO.
//
// Rank 0 generates (into files written atomically; a resumed run reuses them), the other ranks wait;
// all ranks then train as the delegated method does. The manifest keeps the recipe's prompt file as
// the run's data (the controls of a variant matrix compare it) and the generated file under
// data.generated.
#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"
#include "core/files.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/yaml_reader.h"
#include "datasets/h5_io.h"
#include "datasets/sft_data.h"
#include "models/chat.h"
#include "models/checkpoint.h"
#include "models/generate.h"
#include "models/logprobs.h"
#include "models/tokenizer.h"
#include "trainers/constitution.h"
#include "trainers/rollouts.h"
#include "trainers/run.h"

namespace posttrain {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct CaiOptions {
  std::string phase;  // sl | rl
  Constitution constitution;
  std::string constitution_path;
  int64_t rounds = 1;  // sl: critique + revision rounds
  int64_t max_prompts = 0;  // 0: every prompt of the data file
  int64_t generation_batch = 16;  // prompts per generate() call
  GenerationOptions sampling;
  std::string judge;  // rl: judge model folder ("" = the base)
  std::string train_with;  // rl: dpo | reward
  YAML::Node trainer_options;  // the delegated method's own section (constitutional.sft / .dpo / .reward)
};

// The user's request as text: a string prompt, or the last user message of a message list.
std::string prompt_text(const json& record, const std::string& where) {
  const json& prompt = record.at("prompt");
  if (prompt.is_string()) return prompt.get<std::string>();
  if (prompt.is_array())
    for (auto it = prompt.rbegin(); it != prompt.rend(); ++it)
      if (it->is_object() && it->value("role", "") == "user" && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
  throw UserError(where + ": constitutional needs a string prompt or a message list with a user turn");
}

// The principle for (prompt, round), drawn from the recipe seed: the same on every rank and rerun.
const Principle& draw_principle(const Constitution& c, uint64_t seed, int64_t prompt, int64_t round) {
  uint64_t state = seed ^ (0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(prompt + 1)) ^
                   (0xC2B2AE3D27D4EB4FULL * static_cast<uint64_t>(round + 1));
  return c.principles[splitmix64(state) % c.principles.size()];
}

// Greedy or sampled replies of the model to each conversation (rendered with the generation prompt).
std::vector<std::string> reply_all(QwenForCausalLMImpl& model, const Tokenizer& tokenizer,
                                   const std::vector<std::vector<ChatMessage>>& conversations,
                                   GenerationOptions options, int64_t batch, uint64_t first_stream, Progress& progress,
                                   int64_t& done) {
  std::vector<std::string> replies;
  for (size_t first = 0; first < conversations.size(); first += static_cast<size_t>(batch)) {
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = first; i < std::min(conversations.size(), first + static_cast<size_t>(batch)); ++i)
      prompts.push_back(render_chat(tokenizer, conversations[i], /*add_generation_prompt=*/true).ids);
    options.first_stream = first_stream + first;
    const GenerationOutput out = generate(model, prompts, options);
    for (size_t k = 0; k < out.new_ids.size(); ++k) {
      std::vector<int32_t> ids = out.new_ids[k];
      if (out.stopped[k] && !ids.empty()) ids.pop_back();  // the stop token
      replies.push_back(sanitize_utf8(tokenizer.decode(ids, /*skip_special_tokens=*/true)));
    }
    done += static_cast<int64_t>(prompts.size());
    progress.update(done);
  }
  return replies;
}

// SL-CAI: answer, then `rounds` x (critique, revise); returns the chat examples of the final revisions.
std::string sl_generate(RunContext& ctx, const CaiOptions& o, QwenForCausalLMImpl& model, const Tokenizer& tokenizer,
                        const std::vector<std::string>& prompts, const std::string& cai_dir) {
  const int64_t n = static_cast<int64_t>(prompts.size());
  Progress progress("SL-CAI generations", n * (1 + 2 * o.rounds));
  int64_t done = 0;
  std::vector<std::vector<ChatMessage>> ask;
  for (const auto& p : prompts) ask.push_back({{"user", p}});
  std::vector<std::string> answers =
      reply_all(model, tokenizer, ask, o.sampling, o.generation_batch, 0, progress, done);

  // One row per (prompt, round): the answer it started from, the critique and the revision.
  std::vector<std::string> col_prompt, col_principle, col_answer, col_critique, col_revision;
  std::vector<int64_t> col_index, col_round;
  for (int64_t round = 0; round < o.rounds; ++round) {
    std::vector<const Principle*> principles;
    std::vector<std::vector<ChatMessage>> critique_requests;
    for (int64_t i = 0; i < n; ++i) {
      principles.push_back(&draw_principle(o.constitution, ctx.recipe.seed, i, round));
      critique_requests.push_back(critique_messages(prompts[i], answers[i], *principles.back()));
    }
    const uint64_t stream = static_cast<uint64_t>((1 + 2 * round) * n);
    const auto critiques =
        reply_all(model, tokenizer, critique_requests, o.sampling, o.generation_batch, stream, progress, done);
    std::vector<std::vector<ChatMessage>> revision_requests;
    for (int64_t i = 0; i < n; ++i)
      revision_requests.push_back(revision_messages(prompts[i], answers[i], critiques[i], *principles[i]));
    const auto revisions = reply_all(model, tokenizer, revision_requests, o.sampling, o.generation_batch,
                                     stream + static_cast<uint64_t>(n), progress, done);
    for (int64_t i = 0; i < n; ++i) {
      col_index.push_back(i);
      col_round.push_back(round);
      col_prompt.push_back(prompts[i]);
      col_principle.push_back(principles[i]->name);
      col_answer.push_back(answers[i]);
      col_critique.push_back(critiques[i]);
      col_revision.push_back(revisions[i]);
      answers[i] = revisions[i];
    }
  }
  progress.finish();

  const std::string h5 = cai_dir + "/generations.h5", tmp = h5 + ".tmp";
  try {
    H5::H5File file(tmp, H5F_ACC_TRUNC);
    write_vector(file, "prompt_index", col_index, H5::PredType::NATIVE_INT64);
    write_vector(file, "round", col_round, H5::PredType::NATIVE_INT64);
    write_string_column(file, "prompt", col_prompt);
    write_string_column(file, "principle", col_principle);
    write_string_column(file, "answer", col_answer);
    write_string_column(file, "critique", col_critique);
    write_string_column(file, "revision", col_revision);
    write_string_attr(file, "constitution", o.constitution_path);
  } catch (const H5::Exception& e) {
    fail(tmp, "cannot write HDF5: " + e.getDetailMsg());
  }
  fs::rename(tmp, h5);
  std::string readable, examples;
  for (size_t r = 0; r < col_prompt.size(); ++r)
    readable += json{{"prompt_index", col_index[r]},  {"round", col_round[r]},   {"prompt", col_prompt[r]},
                     {"principle", col_principle[r]}, {"answer", col_answer[r]}, {"critique", col_critique[r]},
                     {"revision", col_revision[r]}}
                    .dump() +
                "\n";
  write_file_atomic(cai_dir + "/generations.jsonl", readable);
  for (int64_t i = 0; i < n; ++i)
    examples += json{{"messages",
                      {{{"role", "user"}, {"content", prompts[i]}}, {{"role", "assistant"}, {"content", answers[i]}}}}}
                    .dump() +
                "\n";
  ctx.log_event("SL-CAI: " + std::to_string(n) + " prompts x " + std::to_string(o.rounds) +
                " critique/revision rounds, generations in " + h5);
  return examples;
}

// RL-CAI: two samples per prompt, judged under a drawn principle in both orders.
std::string rl_generate(RunContext& ctx, const CaiOptions& o, QwenForCausalLMImpl& policy, QwenForCausalLMImpl& judge,
                        const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                        const std::vector<json>& records, const std::string& cai_dir) {
  const int64_t n = static_cast<int64_t>(prompts.size());
  Progress progress("RL-CAI samples", 2 * n);
  int64_t done = 0;
  std::vector<std::vector<ChatMessage>> twice;  // prompt i at 2i and 2i+1: two independent samples
  for (const auto& p : prompts) {
    twice.push_back({{"user", p}});
    twice.push_back({{"user", p}});
  }
  GenerationOptions sampling = o.sampling;
  sampling.seed = ctx.recipe.seed;
  const auto samples = reply_all(policy, tokenizer, twice, sampling, 2 * o.generation_batch, 0, progress, done);
  progress.finish();

  torch::NoGradGuard no_grad;
  const std::vector<int32_t> option_a = tokenizer.encode(" (A)"), option_b = tokenizer.encode(" (B)");
  std::string pairs;
  int64_t identical = 0, kept = 0;
  double position_bias = 0;  // mean P(first shown is better), before averaging
  Progress judging("RL-CAI judge", n);
  for (int64_t i = 0; i < n; ++i) {
    const std::string& x = samples[static_cast<size_t>(2 * i)];
    const std::string& y = samples[static_cast<size_t>(2 * i + 1)];
    judging.update(i);  // prompts judged so far
    if (x == y) {  // no preference to learn from two equal answers
      ++identical;
      continue;
    }
    const Principle& principle = draw_principle(o.constitution, ctx.recipe.seed, i, 0);
    const auto xy = tokenizer.encode(comparison_prompt(prompts[i], x, y, principle));
    const auto yx = tokenizer.encode(comparison_prompt(prompts[i], y, x, principle));
    const auto ab_xy = continuation_logprobs(judge, xy, {option_a, option_b});  // one pass per order
    const auto ab_yx = continuation_logprobs(judge, yx, {option_a, option_b});
    const double a_xy = ab_xy[0], b_xy = ab_xy[1], a_yx = ab_yx[0], b_yx = ab_yx[1];
    const double p_x = averaged_preference(a_xy, b_xy, a_yx, b_yx);
    position_bias += 0.5 * (1.0 / (1.0 + std::exp(b_xy - a_xy)) + 1.0 / (1.0 + std::exp(b_yx - a_yx)));
    const bool x_better = p_x >= 0.5;
    pairs += json{{"prompt", records[static_cast<size_t>(i)]["prompt"]},
                  {"chosen", x_better ? x : y},
                  {"rejected", x_better ? y : x},
                  {"preference", x_better ? p_x : 1.0 - p_x},
                  {"principle", principle.name}}
                 .dump() +
             "\n";
    ++kept;
  }
  judging.update(n);
  judging.finish();
  if (kept == 0)
    throw UserError(
        "RL-CAI: every prompt's two samples were identical, so there is nothing to prefer; raise "
        "constitutional.temperature or max_new_tokens");
  ctx.manifest["cai"]["pairs"] = kept;
  ctx.manifest["cai"]["identical_samples_skipped"] = identical;
  ctx.manifest["cai"]["judge_first_position_rate"] = position_bias / static_cast<double>(kept);
  ctx.log_event("RL-CAI: " + std::to_string(kept) + " AI-labelled pairs (" + std::to_string(identical) +
                " prompts skipped: both samples identical); judge picks the first shown answer with p = " +
                std::to_string(position_bias / static_cast<double>(kept)) + " before order averaging");
  return pairs;
}

CaiOptions read_options(RunContext& ctx) {
  YamlSection options(ctx.recipe.method_options, "constitutional", ctx.recipe.file, ctx.recipe.overrides);
  CaiOptions o;
  o.phase = options.get<std::string>("phase", "sl");
  if (o.phase != "sl" && o.phase != "rl")
    options.fail_at("phase", "must be sl (critique + revision, then SFT) or rl (AI feedback)");
  o.constitution_path = options.require<std::string>("constitution");
  o.constitution = load_constitution(o.constitution_path);
  o.rounds = options.get<int64_t>("rounds", o.rounds);
  o.max_prompts = options.get<int64_t>("max_prompts", o.max_prompts);
  o.generation_batch = options.get<int64_t>("generation_batch", o.generation_batch);
  o.judge = options.get<std::string>("judge", "");
  o.train_with = options.get<std::string>("train_with", "dpo");
  o.sampling = read_sampling_options(options);
  if (o.rounds < 1) options.fail_at("rounds", "must be at least 1");
  if (o.max_prompts < 0) options.fail_at("max_prompts", "must be >= 0 (0: every prompt)");
  if (o.generation_batch < 1) options.fail_at("generation_batch", "must be at least 1");
  if (o.train_with != "dpo" && o.train_with != "reward") options.fail_at("train_with", "must be dpo or reward");
  if (o.phase == "sl" && options.has("judge")) options.fail_at("judge", "is for phase: rl");
  if (!o.judge.empty() && !ctx.only_check_options && !fs::is_directory(o.judge))  // may be another variant's
    options.fail_at("judge", "\"" + o.judge + "\" is not a model folder");
  const std::string delegated = o.phase == "sl" ? "sft" : o.train_with;
  o.trainer_options = YAML::Clone(options.raw(delegated));
  for (const char* other : {"sft", "dpo", "reward"})
    if (other != delegated && options.has(other))
      options.fail_at(other, std::string("is not used: phase ") + o.phase + " trains with " + delegated);
  options.finish();
  return o;
}

}  // namespace

void train_constitutional(RunContext& ctx) {
  const CaiOptions o = read_options(ctx);
  const std::string method = o.phase == "sl" ? "sft" : o.train_with;
  if (ctx.only_check_options) {  // the delegated trainer's options too, before anything is generated
    ctx.recipe.method_options = o.trainer_options;
    (*find_trainer(method))(ctx);
    return;
  }
  const std::string cai_dir = ctx.run_dir + "/cai";
  const std::string generated = cai_dir + (o.phase == "sl" ? "/sl_data.jsonl" : "/preferences.jsonl");
  const DataSpec prompt_spec = ctx.recipe.data;
  ctx.manifest["cai"] = {{"phase", o.phase},
                         {"constitution", o.constitution_path},
                         {"constitution_sha256", sha256_file(o.constitution_path)},
                         {"trained_with", method}};

  if (ctx.rank == 0 && !fs::exists(generated)) {  // a resumed run reuses what it generated
    fs::create_directories(cai_dir);
    const Tokenizer tokenizer = Tokenizer::from_dir(ctx.tokenizer_dir);
    std::vector<std::string> prompts;
    std::vector<json> records;
    for_each_jsonl_record(prompt_spec, [&](const json& record, const std::string& where) {
      if (!record.is_object() || !record.contains("prompt")) fail(where, "missing \"prompt\"");
      prompts.push_back(prompt_text(record, where));
      records.push_back(record);
    });
    if (o.max_prompts > 0 && static_cast<int64_t>(prompts.size()) > o.max_prompts) {
      prompts.resize(static_cast<size_t>(o.max_prompts));
      records.resize(static_cast<size_t>(o.max_prompts));
    }
    if (prompts.empty()) fail(prompt_spec.train, "no prompts");
    QwenForCausalLM model = load_model(ctx.base_dir, {torch::kFloat32, parse_device(ctx.recipe.train.device)});
    model->eval();
    GenerationOptions sampling = o.sampling;
    sampling.seed = ctx.recipe.seed;
    sampling.stop_ids = {tokenizer.eos_id(), tokenizer.pad_id()};
    sampling.vocab_limit = tokenizer.id_count();
    CaiOptions with_stops = o;
    with_stops.sampling = sampling;
    std::string data;
    if (o.phase == "sl") {
      data = sl_generate(ctx, with_stops, *model, tokenizer, prompts, cai_dir);
    } else {
      QwenForCausalLM judge = model;
      if (!o.judge.empty()) {
        judge = load_model(o.judge, {torch::kFloat32, parse_device(ctx.recipe.train.device)});
        judge->eval();
      }
      data = rl_generate(ctx, with_stops, *model, *judge, tokenizer, prompts, records, cai_dir);
    }
    write_file_atomic(generated, data);
  }
  ctx.dist->barrier();

  // Train with the delegated method on the generated data, as if the recipe had named it.
  ctx.recipe.data.train = generated;
  ctx.recipe.method_options = o.trainer_options;
  const Trainer* trainer = find_trainer(method);
  if (trainer == nullptr) throw std::runtime_error("constitutional: trainer " + method + " is not registered");
  (*trainer)(ctx);
  json generated_data = ctx.manifest["data"];
  ctx.manifest["data"] = {
      {"train", prompt_spec.train}, {"sha256", sha256_file(prompt_spec.train)}, {"generated", generated_data}};
}

namespace {
const bool registered =
    (register_trainer("constitutional", train_constitutional,
                      "constitutional AI: SL-CAI (critique + revise, then SFT) or RL-CAI (AI feedback, then DPO or a "
                      "reward model) from constitutional.constitution",
                      "prompts"),
     true);
}

}  // namespace posttrain
