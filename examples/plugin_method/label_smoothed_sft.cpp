// method: sft_label_smoothing, an out-of-tree plugin. SFT whose target distribution puts 1 - epsilon
// on the reference token and epsilon spread uniformly over the vocabulary (Szegedy et al., 2016):
//
//   loss_t = (1 - eps) * -log p(y_t) + eps * mean_v(-log p(v))
//
// The uniform term never needs the [tokens x vocab] log-probs: with logits z = W h,
//   mean_v(-log p(v)) = logsumexp(z) - mean_v(z_v) = (z_y - log p(y)) - h . mean_v(W_v),
// so it costs one extra dot product per token on top of the chunked log p(y).
#include <torch/torch.h>

#include "core/yaml_reader.h"
#include "models/logprobs.h"
#include "trainers/loop.h"
#include "trainers/plugin.h"

namespace {

using namespace posttrain;

void train_sft_label_smoothing(RunContext& ctx) {
  const TrainSpec& spec = ctx.recipe.train;
  YamlSection options(ctx.recipe.method_options, ctx.recipe.method, ctx.recipe.file, ctx.recipe.overrides);
  const double epsilon = options.get<double>("epsilon", 0.1);
  if (epsilon < 0 || epsilon >= 1) options.fail_at("epsilon", "must be in [0, 1)");
  options.finish();

  LMTraining t = setup_lm_training(ctx);
  const auto device = t.model->lm_head_weight().device();
  for (int64_t step = t.start_step; step < spec.steps; ++step) {
    StepStats stats;
    int64_t global_loss_tokens = 0;
    const auto examples = rank_examples(ctx, t.data, step, &global_loss_tokens);
    for (const auto& micro : split_micro_batches(examples, spec.micro_batch_size)) {
      const LMBatch batch = make_lm_batch(t.data, micro, t.tokenizer.pad_id());
      const int64_t B = batch.input_ids.size(0), T = batch.input_ids.size(1);
      auto mask = causal_mask(batch.key_padding.to(device), B, T, 0, device);
      auto hidden = t.model->hidden_states(batch.input_ids.to(device), batch.positions.to(device), mask);
      auto h = hidden.narrow(1, 0, T - 1).reshape({-1, hidden.size(2)});  // [N, H]
      auto targets = batch.targets.reshape({-1}).to(device);  // [N]
      auto valid = targets.ne(kIgnoreIndex).to(torch::kFloat32);  // [N]
      auto W = t.model->lm_head_weight();  // [V, H]
      auto logp = chunked_token_logprobs(h, W, targets);  // [N]
      auto target_logit = (h * W.index_select(0, targets.clamp_min(0))).sum(1);  // z_y, [N]
      auto mean_logit = torch::matmul(h, W.mean(0));  // mean_v z_v, [N]
      auto uniform_nll = target_logit - logp - mean_logit;
      auto per_token = ((1.0 - epsilon) * -logp + epsilon * uniform_nll) * valid;
      auto loss = per_token.sum() / static_cast<double>(global_loss_tokens);
      loss.backward();
      stats.loss += loss.item<double>();
      stats.tokens += batch.tokens;
      stats.sequence_length = std::max(stats.sequence_length, T);
    }
    finish_step(ctx, t, step, stats);
  }
  finish_training(ctx, t);
}

}  // namespace

POSTTRAIN_PLUGIN {
  posttrain::register_trainer("sft_label_smoothing", train_sft_label_smoothing,
                              "SFT with label smoothing (option: epsilon), an out-of-tree plugin example");
}
