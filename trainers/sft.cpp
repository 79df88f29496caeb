// method: sft. Supervised fine-tuning: maximise log p(assistant / completion tokens | context), a
// token-weighted mean over every loss token of the optimizer step.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "core/files.h"
#include "core/progress.h"
#include "core/yaml_reader.h"
#include "datasets/sft_data.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "models/tokenizer.h"
#include "trainers/batch.h"
#include "trainers/checkpointing.h"
#include "trainers/optim.h"
#include "trainers/run.h"

namespace fs = std::filesystem;

namespace posttrain {

void train_sft(RunContext& ctx) {
  const Recipe& recipe = ctx.recipe;
  const TrainSpec& spec = recipe.train;
  YamlSection options(recipe.method_options, "sft", recipe.file, recipe.overrides);
  options.finish();  // no sft-specific options yet: any key here is a typo

  const Tokenizer tokenizer = Tokenizer::from_dir(ctx.tokenizer_dir);
  std::string shard;
  const TokenizedDataset data = prepare_sft_data(recipe.data, tokenizer, ctx.tokenizer_sha256, ctx.cache_dir + "/data", &shard);
  ctx.manifest["data"] = {{"train", recipe.data.train}, {"sha256", sha256_file(recipe.data.train)}, {"shard", shard},
                          {"examples", data.size()}, {"truncated", data.truncated}, {"skipped", data.skipped}};
  ctx.write_manifest();

  auto model = load_model(ctx.base_dir, {torch::kFloat32, parse_device(spec.device)});
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& item : model->named_parameters()) params.emplace_back(item.key(), item.value());
  AdamW optimizer(params, spec);

  int64_t step = 0;
  if (recipe.checkpoint.resume == "auto") {
    if (auto latest = latest_checkpoint(ctx.run_dir)) {
      step = load_training_checkpoint(*latest, *model, optimizer);
      ctx.log_event("resumed from " + *latest + " at step " + std::to_string(step));
    }
  }

  const int64_t per_rank = spec.batch_size / ctx.world_size;
  const auto device = model->lm_head_weight().device();
  Progress progress("sft", spec.steps, step);
  for (; step < spec.steps; ++step) {
    const auto started = std::chrono::steady_clock::now();
    // This step's examples: the global batch is the same on every rank; each takes its slice.
    const auto global = sample_indices(data.size(), recipe.seed, step * spec.batch_size, spec.batch_size);
    const int64_t global_loss_tokens = std::max<int64_t>(1, count_loss_tokens(data, global));
    const std::vector<int64_t> mine(global.begin() + ctx.rank * per_rank, global.begin() + (ctx.rank + 1) * per_rank);

    double loss_sum = 0.0;
    int64_t tokens = 0;
    for (int64_t first = 0; first < per_rank; first += spec.micro_batch_size) {
      const std::vector<int64_t> micro(mine.begin() + first, mine.begin() + std::min(per_rank, first + spec.micro_batch_size));
      LMBatch batch = make_lm_batch(data, micro, tokenizer.pad_id());
      const int64_t B = batch.input_ids.size(0), T = batch.input_ids.size(1);
      auto mask = causal_mask(batch.key_padding.to(device), B, T, 0, device);
      auto hidden = model->hidden_states(batch.input_ids.to(device), batch.positions.to(device), mask);  // [B, T, H]
      auto logp = chunked_token_logprobs(hidden.narrow(1, 0, T - 1).reshape({-1, hidden.size(2)}), model->lm_head_weight(),
                                         batch.targets.reshape({-1}).to(device));  // [B * (T-1)]
      // Sum over this micro-batch / tokens of the whole step: micro-steps add up to the step's mean.
      auto loss = -logp.sum() / static_cast<double>(global_loss_tokens);
      loss.backward();
      loss_sum += loss.item<double>();
      tokens += batch.tokens;
    }

    if (ctx.world_size > 1) {
      // One all-reduce per optimizer step, after the last micro-step: each rank's gradient is its
      // share of the global sum (losses were divided by the global token count), so summing is exact.
      std::vector<torch::Tensor> grads;
      for (auto& [name, p] : params)
        if (p.grad().defined()) grads.push_back(p.mutable_grad());
      ctx.dist->all_reduce_sum(grads);
      loss_sum = ctx.dist->all_reduce_sum(loss_sum);
      tokens = static_cast<int64_t>(ctx.dist->all_reduce_sum(static_cast<double>(tokens)));
    }
    const double grad_norm = clip_grad_norm(params, spec.grad_clip);
    if (!std::isfinite(loss_sum) || !std::isfinite(grad_norm)) {
      if (spec.on_nonfinite == "stop")
        throw UserError("step " + std::to_string(step + 1) + ": loss or gradient is not finite (loss " + std::to_string(loss_sum) +
                        ", grad norm " + std::to_string(grad_norm) + "); lower train.lr or set train.on_nonfinite=skip");
      std::cerr << "posttrain: step " << step + 1 << ": non-finite loss/gradient, step skipped\n";
      optimizer.zero_grad();
      continue;
    }
    const double lr = learning_rate(spec, step);
    optimizer.step(lr);
    optimizer.zero_grad();

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double tokens_per_s = static_cast<double>(tokens) / seconds;
    if (ctx.rank == 0 && ((step + 1) % spec.log_every == 0 || step + 1 == spec.steps)) {
      ctx.log_metrics({{"step", step + 1}, {"loss", loss_sum}, {"lr", lr}, {"grad_norm", grad_norm},
                       {"loss_tokens", global_loss_tokens}, {"tokens_per_s", tokens_per_s}});
      progress.update(step + 1, loss_sum, tokens_per_s);
    }
    if (recipe.checkpoint.every > 0 && (step + 1) % recipe.checkpoint.every == 0 && step + 1 < spec.steps) {
      if (ctx.rank == 0) save_training_checkpoint(*model, optimizer, step + 1, ctx.run_dir, ctx.tokenizer_dir, recipe.checkpoint.keep_last);
      ctx.dist->barrier();
    }
  }
  progress.finish();
  if (ctx.rank == 0) {
    save_training_checkpoint(*model, optimizer, spec.steps, ctx.run_dir, ctx.tokenizer_dir, recipe.checkpoint.keep_last);
    const std::string final_dir = (fs::path(ctx.run_dir) / "final").string();
    fs::remove_all(final_dir);
    SaveOptions save;
    save.tokenizer_dir = ctx.tokenizer_dir;
    save_model(*model, final_dir, save);
    ctx.manifest["final_model"] = fs::absolute(final_dir).string();
    ctx.manifest["final_sha256"] = model_weights_sha256(final_dir);
  }
}

namespace {
const bool registered = (register_trainer("sft", train_sft), true);
}

}  // namespace posttrain
