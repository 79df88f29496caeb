// method: sft. Supervised fine-tuning: maximise log p(assistant / completion tokens | context), as a
// token-weighted mean over every loss token of the optimizer step (all micro-steps, all ranks).
#include <torch/torch.h>

#include "core/yaml_reader.h"
#include "trainers/loop.h"

namespace posttrain {

void train_sft(RunContext& ctx) {
  const TrainSpec& spec = ctx.recipe.train;
  YamlSection options(ctx.recipe.method_options, "sft", ctx.recipe.file, ctx.recipe.overrides);
  options.finish();  // sft has no options of its own yet: any key here is a typo
  if (ctx.only_check_options) return;

  LMTraining t = setup_lm_training(ctx);
  for (int64_t step = t.start_step; step < spec.steps; ++step) {
    StepStats stats;
    int64_t global_loss_tokens = 0;
    const auto examples = rank_examples(ctx, t.data, step, &global_loss_tokens);
    for (const auto& micro : split_micro_batches(examples, spec.micro_batch_size)) {
      const LMBatch batch = ctx.recipe.data.pack
                                ? make_packed_lm_batch(t.data, micro, t.tokenizer.pad_id(), ctx.recipe.data.max_length)
                                : make_lm_batch(t.data, micro, t.tokenizer.pad_id());
      auto logp = batch_token_logprobs(*t.model, batch, t.bf16_autocast);  // [B * (T-1)], 0 where no loss
      // Divided by the step's global token count, so micro-steps and ranks add up to the mean.
      auto loss = -logp.sum() / static_cast<double>(global_loss_tokens);
      loss.backward();
      stats.loss += loss.item<double>();
      stats.tokens += batch.tokens;
      stats.head_rows += batch.loss_tokens;
      stats.sequence_length = std::max(stats.sequence_length, batch.input_ids.size(1));
    }
    finish_step(ctx, t, step, stats);
  }
  finish_training(ctx, t);
}

namespace {
const bool registered =
    (register_trainer("sft", train_sft, "supervised fine-tuning on chat or prompt/completion data"), true);
}

}  // namespace posttrain
