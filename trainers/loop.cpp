#include "trainers/loop.h"

#include <sys/resource.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "models/autocast.h"
#include "models/chat.h"
#include "models/checkpoint.h"
#include "models/flops.h"
#include "models/logprobs.h"
#include "models/lora.h"
#include "trainers/checkpointing.h"

namespace fs = std::filesystem;

namespace posttrain {

namespace {

// Adapter dropout draws from the global generator. Seeding it from (seed, step, rank) as each step
// starts makes the step's masks independent of what ran before it (setup, hooks, earlier steps), so
// a resumed run repeats them.
void seed_step_randomness(const RunContext& ctx, int64_t step) {
  if (ctx.recipe.lora.dropout <= 0) return;
  const uint64_t mixed = ctx.recipe.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ull +
                         static_cast<uint64_t>(ctx.rank) * 0x94D049BB133111EBull;
  torch::manual_seed(mixed);
}

double peak_rss_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace

LMTraining setup_lm_training(RunContext& ctx, const std::string& data_kind, int64_t classifier_labels) {
  if (ctx.only_check_options) throw OptionsChecked{};
  const Recipe& recipe = ctx.recipe;
  LMTraining t{Tokenizer::from_dir(ctx.tokenizer_dir)};
  if (data_kind == "prompts") {  // RL: prompts are small and read directly
    t.prompts = read_prompt_jsonl(recipe.data, t.tokenizer);
    ctx.manifest["data"] = {{"train", recipe.data.train},
                            {"sha256", sha256_file(recipe.data.train)},
                            {"prompts", t.prompts.size()},
                            {"truncated", t.prompts.truncated},
                            {"skipped", t.prompts.skipped}};
  } else {
    std::string shard;
    ShardInfo info;
    t.data = prepare_sft_data(recipe.data, t.tokenizer, ctx.tokenizer_sha256, ctx.cache_dir + "/data", &info, &shard,
                              data_kind);
    ctx.manifest["data"] = {{"train", recipe.data.train},
                            {"sha256", info.source_sha256},
                            {"shard", shard},
                            {"examples", t.data.size()},
                            {"truncated", t.data.truncated},
                            {"skipped", t.data.skipped},
                            {"chat_rendering", chat_rendering(t.tokenizer)}};
  }
  ctx.write_manifest();

  const auto device = parse_device(recipe.train.device);
  LoadOptions load;
  load.device = device;
  load.classifier_labels = classifier_labels;
  load.head_seed = recipe.seed;
  t.model = load_model(ctx.base_dir, load);
  t.model->model->checkpoint_layers = recipe.train.activation_checkpointing;
  t.model->train();
  if (recipe.lora.enabled()) {
    // Only the adapters (and a reward model's fresh head) train; the base is frozen, has no
    // gradients and no optimizer state.
    add_lora(*t.model, recipe.lora, recipe.seed, ctx.base_dir);
    t.params = train_only_adapters(*t.model);
  } else {
    for (const auto& item : t.model->named_parameters()) t.params.emplace_back(item.key(), item.value());
  }
  int64_t trainable = 0, total = 0;
  for (const auto& [name, p] : t.params) trainable += p.numel();
  for (const auto& p : t.model->parameters()) total += p.numel();
  ctx.manifest["parameters"] = {{"trainable", trainable}, {"total", total}};
  // train.zero: 1 shards AdamW's state over the ranks (a world of one keeps it whole).
  t.optimizer = std::make_unique<AdamW>(t.params, recipe.train, recipe.train.zero == 1 ? ctx.dist : nullptr);
  if (t.optimizer->sharded())
    ctx.manifest["optimizer_shard"] = {
        {"elements", t.optimizer->slice_length()}, {"of", t.optimizer->total_elements()}, {"ranks", ctx.world_size}};
  if (recipe.checkpoint.resume == "auto") {
    if (auto latest = latest_checkpoint(ctx.run_dir)) {
      t.start_step = load_training_checkpoint(*latest, *t.model, *t.optimizer, &t.method_state);
      ctx.log_event("resumed from " + *latest + " at step " + std::to_string(t.start_step));
    }
  }
  // The steps a killed run logged after its last checkpoint are run again: drop their lines, so
  // metrics.jsonl holds each step once.
  if (ctx.rank == 0) keep_metrics_through(ctx.run_dir, t.start_step);
  t.bf16_autocast = recipe.train.precision == "bf16";
  t.peak_flops = measure_matmul_flops(device, t.bf16_autocast ? torch::kBFloat16 : torch::kFloat32);
  t.progress = std::make_unique<Progress>(recipe.method, recipe.train.steps, t.start_step);
  return t;
}

void keep_metrics_through(const std::string& run_dir, int64_t step) {
  const fs::path path = fs::path(run_dir) / "metrics.jsonl";
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string kept, line;
  bool dropped = false;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    // A torn last line (killed mid-write) is dropped too.
    if (record.is_discarded() || (record.contains("step") && record["step"].is_number() && record["step"] > step)) {
      dropped = true;
      continue;
    }
    kept += line + "\n";
  }
  if (dropped) write_file_atomic(path.string(), kept);
}

std::vector<int64_t> step_batch(const RunContext& ctx, int64_t size, int64_t step) {
  seed_step_randomness(ctx, step);  // every trainer draws its step's batch first
  const int64_t batch = ctx.recipe.train.batch_size;
  return sample_indices(size, ctx.recipe.seed, step * batch, batch);
}

int64_t rank_offset(const RunContext& ctx) { return ctx.rank * (ctx.recipe.train.batch_size / ctx.world_size); }

std::vector<int64_t> rank_share(const RunContext& ctx, const std::vector<int64_t>& global) {
  const int64_t per_rank = static_cast<int64_t>(global.size()) / ctx.world_size, first = rank_offset(ctx);
  return std::vector<int64_t>(global.begin() + first, global.begin() + first + per_rank);
}

std::vector<int64_t> rank_examples(const RunContext& ctx, const TokenizedDataset& data, int64_t step,
                                   int64_t* global_loss_tokens) {
  const auto global = step_batch(ctx, data.size(), step);
  *global_loss_tokens = std::max<int64_t>(1, count_loss_tokens(data, global));
  return rank_share(ctx, global);
}

torch::Tensor batch_token_logprobs(QwenForCausalLMImpl& model, const LMBatch& batch, bool bf16_autocast,
                                   torch::Tensor* hidden_out, double temperature) {
  Bf16Autocast autocast(bf16_autocast);
  const auto device = model.lm_head_weight().device();
  const int64_t B = batch.input_ids.size(0), T = batch.input_ids.size(1);
  auto mask = batch.attention.defined() ? batch.attention.to(device)  // packed: block-diagonal causal
                                        : causal_mask(batch.key_padding.to(device), B, T, 0, device);  // [B, 1, T, T]
  auto hidden = model.hidden_states(batch.input_ids.to(device), batch.positions.to(device), mask);  // [B, T, H]
  if (hidden_out != nullptr) *hidden_out = hidden.narrow(1, 0, T - 1);  // [B, T-1, H]
  // The head runs only where a target is (chunked_token_logprobs skips the rest). The logits are
  // linear in the hidden state, so (hidden / T) W^T = logits / T: tempering costs no second head.
  auto rows = hidden.narrow(1, 0, T - 1).reshape({-1, hidden.size(2)});  // [B * (T-1), H]
  if (temperature != 1.0) rows = rows / temperature;
  return chunked_token_logprobs(rows, model.lm_head_weight(), batch.targets.reshape({-1}).to(device));  // [B * (T-1)]
}

void add_pair_reward_metrics(StepStats& stats, const torch::Tensor& chosen, const torch::Tensor& rejected) {
  torch::NoGradGuard no_grad;
  stats.metric_sums["rewards/chosen"] += chosen.sum().item<double>();
  stats.metric_sums["rewards/rejected"] += rejected.sum().item<double>();
  stats.metric_sums["rewards/margins"] += (chosen - rejected).sum().item<double>();
  stats.metric_sums["rewards/accuracy"] += (chosen > rejected).sum().item<double>();
  stats.metric_count += static_cast<double>(chosen.size(0));
}

double apply_update(RunContext& ctx, LMTraining& t, int64_t step, double rank_loss, double lr_scale) {
  const TrainSpec& spec = ctx.recipe.train;
  double loss = rank_loss;
  if (ctx.world_size > 1) {
    // One all-reduce per update, after its last micro-step: each rank's gradient is its share of the
    // global sum (losses were divided by the global token count), so summing is exact.
    std::vector<torch::Tensor> grads;
    for (auto& [name, p] : t.params)
      if (p.grad().defined()) grads.push_back(p.mutable_grad());
    ctx.dist->all_reduce_sum(grads);
    loss = ctx.dist->all_reduce_sum(loss);
  }
  const double grad_norm = clip_grad_norm(t.params, spec.grad_clip);
  if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
    t.optimizer->zero_grad();
    if (spec.on_nonfinite == "stop")
      throw UserError("step " + std::to_string(step + 1) + ": loss or gradient is not finite (loss " +
                      std::to_string(loss) + ", grad norm " + std::to_string(grad_norm) +
                      "); lower train.lr or set train.on_nonfinite=skip");
    ctx.log_event("step " + std::to_string(step + 1) + ": non-finite loss or gradient, step skipped");
    return std::nan("");
  }
  t.optimizer->step(learning_rate(spec, step) * lr_scale);
  t.optimizer->zero_grad();
  return grad_norm;
}

bool finish_step(RunContext& ctx, LMTraining& t, int64_t step, StepStats stats) {
  const TrainSpec& spec = ctx.recipe.train;
  const double grad_norm = apply_update(ctx, t, step, stats.loss);
  if (std::isnan(grad_norm)) return false;
  if (ctx.world_size > 1) {
    stats.loss = ctx.dist->all_reduce_sum(stats.loss);
    stats.tokens = static_cast<int64_t>(ctx.dist->all_reduce_sum(static_cast<double>(stats.tokens)));
    stats.head_rows = static_cast<int64_t>(ctx.dist->all_reduce_sum(static_cast<double>(stats.head_rows)));
    for (auto& [name, sum] : stats.metric_sums) sum = ctx.dist->all_reduce_sum(sum);
    stats.metric_count = ctx.dist->all_reduce_sum(stats.metric_count);
  }
  const double lr = learning_rate(spec, step);

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - stats.started).count();
  const double tokens_per_s = static_cast<double>(stats.tokens) / seconds;
  // MFU: training FLOPs (3 x forward: forward + backward) over the bare-matmul FLOP/s of every rank.
  // The LM head ran only on the positions with a target where the trainer counted them (head_rows).
  const double tokens = static_cast<double>(stats.tokens);
  const double head_rows = stats.head_rows > 0 ? static_cast<double>(stats.head_rows) : tokens;
  const double head_flops = lm_head_flops_per_token(t.model->config);
  const double flops = 3.0 * ((forward_flops_per_token(t.model->config, stats.sequence_length) - head_flops) * tokens +
                              head_flops * head_rows);
  const double mfu = flops / seconds / (t.peak_flops * ctx.world_size);
  if (ctx.rank == 0 && ((step + 1) % spec.log_every == 0 || step + 1 == spec.steps)) {
    nlohmann::json record = {{"step", step + 1},
                             {"loss", stats.loss},
                             {"lr", lr},
                             {"grad_norm", grad_norm},
                             {"tokens_per_s", tokens_per_s},
                             {"mfu", mfu},
                             {"peak_rss_mib", peak_rss_mib()}};
    for (const auto& [name, sum] : stats.metric_sums) record[name] = sum / std::max(1.0, stats.metric_count);
    for (const auto& [name, value] : stats.rank0_values) record[name] = value;
    ctx.log_metrics(record);
    t.progress->update(step + 1, stats.loss, tokens_per_s);
  }
  const CheckpointSpec& checkpoint = ctx.recipe.checkpoint;
  if (checkpoint.every > 0 && (step + 1) % checkpoint.every == 0 && step + 1 < spec.steps) {
    if (ctx.rank == 0 || t.optimizer->sharded())  // sharded: every rank writes its shard
      save_training_checkpoint(*t.model, *t.optimizer, step + 1, ctx.run_dir, ctx.tokenizer_dir, checkpoint.keep_last,
                               &t.method_state, ctx.dist);
    ctx.dist->barrier();  // nobody runs ahead of a checkpoint that a restart may resume from
    ctx.run_policy_hook(*t.model, step + 1, HookPoint::kCheckpoint);
  }
  ctx.run_policy_hook(*t.model, step + 1, HookPoint::kStep);
  return true;
}

QwenForCausalLM reference_model(RunContext& ctx, LMTraining& t) {
  if (has_lora(*t.model)) {  // shares the policy; not switched to eval mode
    ctx.manifest["reference"] = "the policy with its adapters disabled";
    return t.model;
  }
  ctx.manifest["reference"] = "the base, loaded again";
  QwenForCausalLM reference = load_model(ctx.base_dir, {torch::kFloat32, t.model->device()});
  reference->eval();
  return reference;
}

Moments global_moments(RunContext& ctx, double sum, double sum_sq, double count) {
  Moments m;
  m.count = ctx.dist->all_reduce_sum(count);
  const double n = std::max(1.0, m.count);
  m.mean = ctx.dist->all_reduce_sum(sum) / n;
  m.variance = std::max(0.0, ctx.dist->all_reduce_sum(sum_sq) / n - m.mean * m.mean);
  return m;
}

void finish_training(RunContext& ctx, LMTraining& t) {
  t.progress->finish();
  if (ctx.rank == 0 || t.optimizer->sharded())
    save_training_checkpoint(*t.model, *t.optimizer, ctx.recipe.train.steps, ctx.run_dir, ctx.tokenizer_dir,
                             ctx.recipe.checkpoint.keep_last, &t.method_state, ctx.dist);
  if (ctx.rank == 0) {
    const std::string final_dir = (fs::path(ctx.run_dir) / "final").string();
    fs::remove_all(final_dir);
    if (has_lora(*t.model)) {  // a PEFT adapter folder on the base (posttrain merge makes a full one)
      save_adapter(*t.model, final_dir, ctx.tokenizer_dir);
    } else {
      SaveOptions save;
      save.tokenizer_dir = ctx.tokenizer_dir;
      save_model(*t.model, final_dir, save);
    }
    ctx.manifest["final_model"] = fs::absolute(final_dir).string();
    ctx.manifest["final_sha256"] = model_weights_sha256(final_dir);
  }
  ctx.run_policy_hook(*t.model, ctx.recipe.train.steps, HookPoint::kAfterRun);
}

}  // namespace posttrain
